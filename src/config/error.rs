//! The one error type of configuration loading. Every message names the file (when the value
//! came from one), the field as a dotted path (`authentication.anonymous.enabled`) or the flag
//! (`--node-ip`), and the problem. All of these are the operator's to fix.

use std::io;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file is missing, unreadable, too large or not UTF-8.
    #[error("{}: cannot read configuration file: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Not YAML/JSON at all; `message` carries the parser's line and column.
    #[error("{}: malformed YAML/JSON: {message}", path.display())]
    Malformed { path: PathBuf, message: String },
    /// Not a KubeletConfiguration v1beta1 field (`hint` may suggest the intended spelling).
    #[error("{}{field}: unknown field: not part of KubeletConfiguration {api}{hint}", at(.file), api = super::file::API_VERSION)]
    UnknownField {
        file: Option<PathBuf>,
        field: String,
        hint: String,
    },
    /// A value that is malformed or out of range.
    #[error("{}{field}: {problem}", at(.file))]
    Invalid {
        file: Option<PathBuf>,
        field: String,
        problem: String,
    },
    /// A value that would weaken the node; refused outright, naming the check of the self-audit
    /// (`ironlet check`) that would FAIL it: a CIS benchmark id, or one of ironlet's own.
    #[error("{}{field}: {problem}: refused ({})", at(.file), check_name(.cis))]
    Insecure {
        file: Option<PathBuf>,
        field: String,
        problem: String,
        cis: &'static str,
    },
    /// No --hostname-override and the machine's hostname could not be read.
    #[error("{}: cannot read the machine hostname (set --hostname-override): {source}", path.display())]
    Hostname {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl ConfigError {
    /// The field or flag the error is about, if it is about one.
    pub fn field(&self) -> Option<&str> {
        match self {
            Self::UnknownField { field, .. }
            | Self::Invalid { field, .. }
            | Self::Insecure { field, .. } => Some(field),
            Self::Read { .. } | Self::Malformed { .. } | Self::Hostname { .. } => None,
        }
    }
}

/// "CIS Kubernetes Benchmark 4.2.4" for a CIS id, "ironlet check ironlet.2.4" for ours.
fn check_name(id: &str) -> String {
    match id.starts_with("ironlet.") {
        true => format!("ironlet check {id}"),
        false => format!("CIS Kubernetes Benchmark {id}"),
    }
}

fn at(file: &Option<PathBuf>) -> String {
    file.as_deref()
        .map(|p| format!("{}: ", p.display()))
        .unwrap_or_default()
}

/// Where a value came from, so errors about it can say so.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Source<'a> {
    pub file: Option<&'a Path>,
}

impl Source<'_> {
    /// Values from flags: errors name the flag, not the file.
    pub const FLAGS: Source<'static> = Source { file: None };

    pub fn invalid(self, field: impl Into<String>, problem: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            file: self.file.map(Path::to_path_buf),
            field: field.into(),
            problem: problem.into(),
        }
    }

    pub fn insecure(
        self,
        field: impl Into<String>,
        problem: impl Into<String>,
        cis: &'static str,
    ) -> ConfigError {
        ConfigError::Insecure {
            file: self.file.map(Path::to_path_buf),
            field: field.into(),
            problem: problem.into(),
            cis,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_file_field_and_problem() {
        let file = Source {
            file: Some(Path::new("/etc/ironlet/config.yaml")),
        };
        let err = file.invalid(
            "fileCheckFrequency",
            r#"invalid duration "20x": unknown unit "x""#,
        );
        assert_eq!(
            err.to_string(),
            r#"/etc/ironlet/config.yaml: fileCheckFrequency: invalid duration "20x": unknown unit "x""#
        );
        assert_eq!(err.field(), Some("fileCheckFrequency"));

        let err = file.insecure("readOnlyPort", "must be 0", "4.2.4");
        assert_eq!(
            err.to_string(),
            "/etc/ironlet/config.yaml: readOnlyPort: must be 0: refused (CIS Kubernetes Benchmark 4.2.4)"
        );
    }

    #[test]
    fn flag_errors_have_no_file_prefix() {
        let err = Source::FLAGS.invalid("--root-dir", "must be an absolute path");
        assert_eq!(err.to_string(), "--root-dir: must be an absolute path");
    }
}
