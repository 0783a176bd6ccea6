//! Builder and node names.

use crate::Error;

/// Checks a builder or node name like buildx (`^[a-zA-Z][a-zA-Z0-9._-]*$`) and returns it
/// lower-cased (the form used for file names and new node names).
///
/// ```
/// assert_eq!(kbx_store::validate_name("My_Builder-1.x")?, "my_builder-1.x");
/// assert_eq!(
///     kbx_store::validate_name("123builder").unwrap_err().to_string(),
///     "invalid name 123builder, name needs to start with a letter and may not contain symbols, except ._-"
/// );
/// # Ok::<(), kbx_store::Error>(())
/// ```
pub fn validate_name(name: &str) -> Result<String, Error> {
    let mut bytes = name.bytes();
    let valid = bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
    if valid {
        Ok(name.to_ascii_lowercase())
    } else {
        Err(Error::InvalidName(name.to_owned()))
    }
}
