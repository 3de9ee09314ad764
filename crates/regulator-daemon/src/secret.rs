//! Secrets and certificate files the configuration points at. They are read when a
//! configuration is applied (at start and on each reload, so a rotated file is picked up),
//! kept out of the configuration itself, and never logged: an error names the file or the
//! variable, never the value.

use std::path::Path;

/// A secret or certificate file that cannot be read.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SecretError(pub(crate) String);

/// The secret in `file`, else in the environment variable `env`, trimmed; `None` when
/// neither is set. `what` names it in errors.
///
/// # Errors
/// The file cannot be read, or the variable is not set or not UTF-8.
pub(crate) fn read(
    file: Option<&Path>,
    env: Option<&str>,
    what: &str,
) -> Result<Option<String>, SecretError> {
    if let Some(path) = file {
        let text = std::fs::read_to_string(path)
            .map_err(|e| SecretError(format!("{what} file {}: {e}", path.display())))?;
        return Ok(Some(text.trim().to_owned()));
    }
    if let Some(var) = env {
        let value = std::env::var(var)
            .map_err(|_| SecretError(format!("{what}: environment variable {var} is not set")))?;
        return Ok(Some(value.trim().to_owned()));
    }
    Ok(None)
}

/// The bytes of a certificate or key file.
///
/// # Errors
/// The file cannot be read, or is empty.
pub(crate) fn read_pem(path: &Path, what: &str) -> Result<Vec<u8>, SecretError> {
    let pem =
        std::fs::read(path).map_err(|e| SecretError(format!("{what} {}: {e}", path.display())))?;
    if pem.iter().all(u8::is_ascii_whitespace) {
        return Err(SecretError(format!(
            "{what} {}: the file is empty",
            path.display()
        )));
    }
    Ok(pem)
}
