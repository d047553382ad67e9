//! Capability reduction: the five sets of the calling thread cut down to a kept set.
//! Run single-threaded (before the async runtime starts), so every later thread inherits it.

use caps::{CapSet, Capability, CapsHashSet};

use super::ConfineError;

/// Reduces bounding, ambient, inheritable, effective and permitted to `keep`.
pub fn reduce_to(keep: &[Capability]) -> Result<(), ConfineError> {
    let keep: CapsHashSet = keep.iter().copied().collect();
    let err = |what: &str, source: caps::errors::CapsError| ConfineError::Capabilities {
        step: what.to_owned(),
        source,
    };
    // Bounding first: dropping from it needs CAP_SETPCAP, which goes with the rest below.
    let bounding = caps::read(None, CapSet::Bounding).map_err(|e| err("read bounding", e))?;
    for cap in bounding.difference(&keep) {
        caps::drop(None, CapSet::Bounding, *cap)
            .map_err(|e| err(&format!("drop {cap} from bounding"), e))?;
    }
    caps::clear(None, CapSet::Ambient).map_err(|e| err("clear ambient", e))?;
    caps::clear(None, CapSet::Inheritable).map_err(|e| err("clear inheritable", e))?;
    let permitted = caps::read(None, CapSet::Permitted).map_err(|e| err("read permitted", e))?;
    let kept: CapsHashSet = permitted.intersection(&keep).copied().collect();
    caps::set(None, CapSet::Effective, &kept).map_err(|e| err("set effective", e))?;
    caps::set(None, CapSet::Permitted, &kept).map_err(|e| err("set permitted", e))?;
    Ok(())
}

/// Names of the capabilities in a /proc status mask (e.g. `CapEff: 0000000000000006`).
pub fn decode_mask(mask: u64) -> Vec<String> {
    let mut names: Vec<String> = caps::all()
        .into_iter()
        .filter(|c| mask & c.bitmask() != 0)
        .map(|c| c.to_string())
        .collect();
    names.sort();
    let known: u64 = caps::all()
        .iter()
        .map(|c| c.bitmask())
        .fold(0, |a, b| a | b);
    for bit in 0..64 {
        if mask & (1 << bit) != 0 && known & (1 << bit) == 0 {
            names.push(format!("cap_{bit}"));
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_decode_to_names() {
        assert_eq!(decode_mask(0), Vec::<String>::new());
        assert_eq!(
            decode_mask((1 << 1) | (1 << 3)),
            vec!["CAP_DAC_OVERRIDE".to_string(), "CAP_FOWNER".to_string()]
        );
        assert_eq!(decode_mask(1 << 21), vec!["CAP_SYS_ADMIN".to_string()]);
    }
}
