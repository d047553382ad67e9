//! A systemd service unit and its drop-ins, read the way systemd reads them, as far as the
//! kubelet's command line goes: `[Service]` `ExecStart=` (an empty assignment resets it, as
//! kubeadm's 10-kubeadm.conf does), `Environment=` and `EnvironmentFile=`, then `$VAR` /
//! `${VAR}` expansion and quoting of ExecStart. Operator files, so the parsers are pure and
//! fuzzed (`fuzz/fuzz_targets/systemd_unit.rs`); reading is capped.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Unit files and environment files larger than this are refused.
pub const MAX_UNIT_BYTES: u64 = 1 << 20;
/// Where systemd looks for units, in priority order.
pub const UNIT_DIRS: &[&str] = &[
    "/etc/systemd/system",
    "/usr/lib/systemd/system",
    "/lib/systemd/system",
];

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UnitError {
    #[error("{path}: {problem}")]
    File { path: String, problem: String },
    #[error("{path}: no ExecStart= in [Service]")]
    NoExecStart { path: String },
    #[error("{path}: ExecStart: {problem}")]
    ExecStart { path: String, problem: String },
}

/// The `[Service]` settings of one file, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceSection {
    /// `None` is an empty assignment (reset).
    pub exec_start: Vec<Option<String>>,
    pub environment: Vec<String>,
    /// (path, optional: the `-` prefix).
    pub environment_files: Vec<(String, bool)>,
}

/// Parses one unit or drop-in file's text: sections, comments, continuation lines.
pub fn parse_service(text: &str) -> ServiceSection {
    let mut out = ServiceSection::default();
    let mut in_service = false;
    let mut logical = String::new();
    for raw in text.lines() {
        if logical.is_empty() {
            let t = raw.trim_start();
            if t.starts_with('#') || t.starts_with(';') {
                continue;
            }
        }
        if let Some(body) = raw.strip_suffix('\\') {
            logical.push_str(body);
            logical.push(' ');
            continue;
        }
        logical.push_str(raw);
        let line = std::mem::take(&mut logical);
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if line.starts_with('[') {
            in_service = line == "[Service]";
            continue;
        }
        if !in_service {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let value = value.trim();
        match key.trim() {
            "ExecStart" => out
                .exec_start
                .push((!value.is_empty()).then(|| value.to_owned())),
            "Environment" if value.is_empty() => out.environment.clear(),
            "Environment" => {
                if let Ok(words) = split_words(value, &BTreeMap::new(), false) {
                    out.environment.extend(words);
                }
            }
            "EnvironmentFile" if value.is_empty() => out.environment_files.clear(),
            "EnvironmentFile" => {
                let (path, optional) = match value.strip_prefix('-') {
                    Some(p) => (p, true),
                    None => (value, false),
                };
                out.environment_files.push((path.to_owned(), optional));
            }
            _ => {}
        }
    }
    out
}

/// Parses an environment file (KEY=VALUE lines, `#`/`;` comments, optional quotes).
pub fn parse_env_file(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let k = k.trim();
        if !valid_name(k) {
            continue;
        }
        let v = v.trim();
        let v = match split_words(v, &BTreeMap::new(), false) {
            Ok(words) if v.starts_with('"') || v.starts_with('\'') => words.join(" "),
            _ => v.to_owned(),
        };
        out.push((k.to_owned(), v));
    }
    out
}

fn valid_name(k: &str) -> bool {
    !k.is_empty()
        && !k.starts_with(|c: char| c.is_ascii_digit())
        && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Splits a command line as systemd does: whitespace-separated words with "..." and '...'
/// quoting and backslash escapes. With `expand`, `${VAR}` is replaced inside a word and a
/// word that is exactly `$VAR` becomes the whitespace-split words of its value.
pub fn split_words(
    s: &str,
    env: &BTreeMap<String, String>,
    expand: bool,
) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            return Ok(words);
        }
        let mut word = String::new();
        let mut quoted = false;
        let mut whole_var: Option<String> = None;
        let mut first = true;
        while let Some(&c) = chars.peek() {
            if c.is_whitespace() {
                break;
            }
            chars.next();
            match c {
                '"' | '\'' => {
                    quoted = true;
                    loop {
                        match chars.next() {
                            None => return Err("unterminated quote".into()),
                            Some(q) if q == c => break,
                            Some('\\') if c == '"' => {
                                if let Some(n) = chars.next() {
                                    word.push(n);
                                }
                            }
                            Some('$') if expand && c == '"' => {
                                expand_var(&mut chars, env, &mut word)
                            }
                            Some(o) => word.push(o),
                        }
                    }
                }
                '\\' => {
                    if let Some(n) = chars.next() {
                        word.push(n);
                    }
                }
                '$' if expand => {
                    if first
                        && chars
                            .peek()
                            .is_some_and(|c| c.is_ascii_alphabetic() || *c == '_')
                    {
                        let name: String = std::iter::from_fn(|| {
                            chars.next_if(|c| c.is_ascii_alphanumeric() || *c == '_')
                        })
                        .collect();
                        if chars.peek().is_none_or(|c| c.is_whitespace()) {
                            whole_var = Some(name);
                            break;
                        }
                        word.push_str(env.get(&name).map_or("", String::as_str));
                    } else {
                        expand_var(&mut chars, env, &mut word);
                    }
                }
                other => word.push(other),
            }
            first = false;
        }
        match whole_var {
            Some(name) => words.extend(
                env.get(&name)
                    .map(|v| v.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
                    .unwrap_or_default(),
            ),
            None if !word.is_empty() || quoted => words.push(word),
            None => {}
        }
    }
}

fn expand_var(
    chars: &mut std::iter::Peekable<std::str::Chars<'_>>,
    env: &BTreeMap<String, String>,
    word: &mut String,
) {
    if chars.next_if_eq(&'{').is_some() {
        let name: String = std::iter::from_fn(|| chars.next_if(|c| *c != '}')).collect();
        chars.next();
        word.push_str(env.get(&name).map_or("", String::as_str));
    } else if chars
        .peek()
        .is_some_and(|c| c.is_ascii_alphabetic() || *c == '_')
    {
        let name: String =
            std::iter::from_fn(|| chars.next_if(|c| c.is_ascii_alphanumeric() || *c == '_'))
                .collect();
        word.push_str(env.get(&name).map_or("", String::as_str));
    } else {
        word.push('$');
    }
}

/// The merged view of a unit and its drop-ins: the effective ExecStart, expanded into argv.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceCommand {
    /// The files read, unit first, then drop-ins in order.
    pub files: Vec<PathBuf>,
    pub argv: Vec<String>,
}

/// Merges parsed files (unit first, then drop-ins in order) and expands ExecStart with the
/// environment; `read_env` returns an environment file's text (None if it does not exist).
pub fn resolve(
    parts: &[(PathBuf, ServiceSection)],
    read_env: &mut dyn FnMut(&str) -> Result<Option<String>, String>,
) -> Result<ServiceCommand, UnitError> {
    let name = parts
        .first()
        .map(|(p, _)| p.display().to_string())
        .unwrap_or_default();
    let mut exec: Option<String> = None;
    let mut env = BTreeMap::new();
    let mut env_files = Vec::new();
    for (_, s) in parts {
        for e in &s.exec_start {
            exec = e.clone();
        }
        for assignment in &s.environment {
            if let Some((k, v)) = assignment.split_once('=')
                && valid_name(k)
            {
                env.insert(k.to_owned(), v.to_owned());
            }
        }
        env_files.extend(s.environment_files.iter().cloned());
    }
    // EnvironmentFile= values override Environment= ones, as in systemd.
    for (path, optional) in env_files {
        match read_env(&path) {
            Ok(Some(text)) => env.extend(parse_env_file(&text)),
            Ok(None) if optional => {}
            Ok(None) => {
                return Err(UnitError::File {
                    path,
                    problem: "EnvironmentFile does not exist (and is not marked optional with -)"
                        .into(),
                });
            }
            Err(problem) => return Err(UnitError::File { path, problem }),
        }
    }
    let Some(exec) = exec else {
        return Err(UnitError::NoExecStart { path: name });
    };
    // Prefixes: - (ignore failure), @ (argv[0] follows), : (no expansion), + ! !! (privileges).
    let mut rest = exec.as_str();
    let mut at = false;
    let mut no_expand = false;
    while let Some(c) = rest.chars().next().filter(|c| "-@:+!".contains(*c)) {
        at |= c == '@';
        no_expand |= c == ':';
        rest = &rest[1..];
    }
    let mut argv = split_words(rest, &env, !no_expand).map_err(|problem| UnitError::ExecStart {
        path: name.clone(),
        problem,
    })?;
    if at && argv.len() >= 2 {
        argv.remove(0);
    }
    if argv.is_empty() {
        return Err(UnitError::ExecStart {
            path: name,
            problem: "empty command".into(),
        });
    }
    Ok(ServiceCommand {
        files: parts.iter().map(|(p, _)| p.clone()).collect(),
        argv,
    })
}

fn read_capped(path: &Path) -> Result<Option<String>, String> {
    let f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    let mut text = String::new();
    f.take(MAX_UNIT_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| e.to_string())?;
    if text.len() as u64 > MAX_UNIT_BYTES {
        return Err(format!("larger than {MAX_UNIT_BYTES} bytes"));
    }
    Ok(Some(text))
}

/// The unit file and drop-ins that make up the service `path` names: `path` may be the unit
/// (its drop-ins are `<dir>/<unit>.d/*.conf` in every unit directory) or one drop-in (the
/// unit is then looked up in [`UNIT_DIRS`]). Drop-ins are ordered by file name; a name in an
/// earlier directory hides the same name in a later one.
pub fn unit_files(path: &Path) -> Vec<PathBuf> {
    let parent = path.parent().unwrap_or(Path::new("/"));
    let dropin_dir_name = parent.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let (unit_name, unit_path) = match dropin_dir_name.strip_suffix(".d") {
        Some(unit) if path.extension().is_some_and(|e| e == "conf") => {
            let found = UNIT_DIRS
                .iter()
                .map(|d| Path::new(d).join(unit))
                .chain(parent.parent().map(|p| p.join(unit)))
                .find(|p| p.is_file());
            (unit.to_owned(), found)
        }
        _ => (
            path.file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("")
                .to_owned(),
            Some(path.to_path_buf()),
        ),
    };
    let mut dirs: Vec<PathBuf> = UNIT_DIRS
        .iter()
        .map(|d| Path::new(d).join(format!("{unit_name}.d")))
        .collect();
    let own = match dropin_dir_name.ends_with(".d") && path.extension().is_some_and(|e| e == "conf")
    {
        true => parent.to_path_buf(),
        false => parent.join(format!("{unit_name}.d")),
    };
    if !dirs.contains(&own) {
        dirs.insert(0, own);
    }
    let mut dropins: BTreeMap<String, PathBuf> = BTreeMap::new();
    for d in dirs {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.ends_with(".conf") {
                dropins.entry(name).or_insert_with(|| e.path());
            }
        }
    }
    unit_path.into_iter().chain(dropins.into_values()).collect()
}

/// Reads the service `path` names (see [`unit_files`]) and returns its effective command.
pub fn read_service(path: &Path) -> Result<ServiceCommand, UnitError> {
    let mut parts = Vec::new();
    for f in unit_files(path) {
        let text = read_capped(&f)
            .map_err(|problem| UnitError::File {
                path: f.display().to_string(),
                problem,
            })?
            .ok_or_else(|| UnitError::File {
                path: f.display().to_string(),
                problem: "does not exist".into(),
            })?;
        parts.push((f, parse_service(&text)));
    }
    if parts.is_empty() {
        return Err(UnitError::File {
            path: path.display().to_string(),
            problem: "no unit file found".into(),
        });
    }
    resolve(&parts, &mut |p| read_capped(Path::new(p)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const UNIT: &str =
        "[Unit]\nDescription=kubelet\n\n[Service]\nExecStart=/usr/bin/kubelet\nRestart=always\n";
    const KUBEADM: &str = "# Note: This dropin only works with kubeadm and kubelet v1.11+\n[Service]\n\
Environment=\"KUBELET_KUBECONFIG_ARGS=--bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.conf --kubeconfig=/etc/kubernetes/kubelet.conf\"\n\
Environment=\"KUBELET_CONFIG_ARGS=--config=/var/lib/kubelet/config.yaml\"\n\
EnvironmentFile=-/var/lib/kubelet/kubeadm-flags.env\n\
EnvironmentFile=-/etc/default/kubelet\n\
ExecStart=\n\
ExecStart=/usr/bin/kubelet $KUBELET_KUBECONFIG_ARGS $KUBELET_CONFIG_ARGS $KUBELET_KUBEADM_ARGS $KUBELET_EXTRA_ARGS\n";

    #[test]
    fn kubeadm_dropin_shape() {
        let parts = vec![
            (
                PathBuf::from("/lib/systemd/system/kubelet.service"),
                parse_service(UNIT),
            ),
            (
                PathBuf::from("/etc/systemd/system/kubelet.service.d/10-kubeadm.conf"),
                parse_service(KUBEADM),
            ),
        ];
        let mut read = |p: &str| -> Result<Option<String>, String> {
            Ok(match p {
                "/var/lib/kubelet/kubeadm-flags.env" => Some(
                    "KUBELET_KUBEADM_ARGS=\"--container-runtime-endpoint=unix:///run/containerd/containerd.sock --pod-infra-container-image=registry.k8s.io/pause:3.10\"\n".into(),
                ),
                _ => None,
            })
        };
        let cmd = resolve(&parts, &mut read).unwrap();
        assert_eq!(
            cmd.argv,
            [
                "/usr/bin/kubelet",
                "--bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.conf",
                "--kubeconfig=/etc/kubernetes/kubelet.conf",
                "--config=/var/lib/kubelet/config.yaml",
                "--container-runtime-endpoint=unix:///run/containerd/containerd.sock",
                "--pod-infra-container-image=registry.k8s.io/pause:3.10",
            ]
        );
    }

    #[test]
    fn quoting_braces_continuations_and_prefixes() {
        let s = parse_service(
            "[Service]\nEnvironment=A=1 'B=two words' C=\"x y\"\nExecStart=-/bin/ironlet run \\\n  --config=${A}.yaml \"--hostname-override=$C\" '$B' \\\"q\\\"\n",
        );
        let cmd = resolve(&[(PathBuf::from("u"), s)], &mut |_| Ok(None)).unwrap();
        assert_eq!(
            cmd.argv,
            [
                "/bin/ironlet",
                "run",
                "--config=1.yaml",
                "--hostname-override=x y",
                "$B",
                "\"q\""
            ]
        );
        // A later section does not pick up [Service] keys; a missing required env file is an error.
        let s = parse_service(
            "[Service]\nEnvironmentFile=/nope\nExecStart=/bin/k\n[Install]\nExecStart=/bin/other\n",
        );
        assert!(matches!(
            resolve(&[(PathBuf::from("u"), s)], &mut |_| Ok(None)),
            Err(UnitError::File { .. })
        ));
        let s = parse_service("[Service]\nExecStart=/bin/k\nExecStart=\n");
        assert!(matches!(
            resolve(&[(PathBuf::from("u"), s)], &mut |_| Ok(None)),
            Err(UnitError::NoExecStart { .. })
        ));
        assert!(split_words("\"open", &BTreeMap::new(), true).is_err());
    }

    #[test]
    fn dropins_are_found_next_to_the_unit() {
        let d = tempfile::tempdir().unwrap();
        let unit = d.path().join("kubelet.service");
        std::fs::write(&unit, UNIT).unwrap();
        std::fs::create_dir(d.path().join("kubelet.service.d")).unwrap();
        std::fs::write(
            d.path().join("kubelet.service.d/20-b.conf"),
            "[Service]\nExecStart=\nExecStart=/b\n",
        )
        .unwrap();
        std::fs::write(
            d.path().join("kubelet.service.d/10-a.conf"),
            "[Service]\nExecStart=\nExecStart=/a\n",
        )
        .unwrap();
        let cmd = read_service(&unit).unwrap();
        assert_eq!(cmd.argv, ["/b"]);
        assert_eq!(cmd.files.len(), 3);
        // Naming a drop-in finds the unit beside its directory and the other drop-ins.
        let cmd = read_service(&d.path().join("kubelet.service.d/10-a.conf")).unwrap();
        assert_eq!(cmd.files[0], unit);
        assert_eq!(cmd.argv, ["/b"]);
    }
}
