//! The runtime's object ids as types: a sandbox id is never passed where a container id is
//! wanted. A leaf module: it depends on nothing in the crate.

use std::fmt;

macro_rules! runtime_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            pub fn new(id: impl Into<String>) -> Self {
                $name(id.into())
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub fn into_string(self) -> String {
                self.0
            }
        }

        /// Reads as the wire string, so code that only shows or compares an id needs no
        /// conversion; the typed seam is the other way round (a string is never an id).
        impl std::ops::Deref for $name {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<String> for $name {
            fn from(id: String) -> Self {
                $name(id)
            }
        }

        impl From<&str> for $name {
            fn from(id: &str) -> Self {
                $name(id.to_string())
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<String> for $name {
            fn eq(&self, other: &String) -> bool {
                self.0 == *other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }
    };
}

runtime_id!(
    /// A container's id as the runtime assigned it (without the `containerd://` prefix).
    ContainerId
);

runtime_id!(
    /// A pod sandbox's id as the runtime assigned it.
    SandboxId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_show_and_compare_as_their_text() {
        let c = ContainerId::new("abc");
        assert_eq!(c.to_string(), "abc");
        assert!(c == "abc");
        assert!(c != "abd");
        assert_eq!(SandboxId::from("s1").as_str(), "s1");
        assert_eq!(ContainerId::from(String::from("x")).into_string(), "x");
    }
}
