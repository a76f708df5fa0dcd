//! Layer encryption with `age`.
//!
//! The passphrase (`--secret`, `POD_SECRET`) wraps a per-pod age X25519 key with age's scrypt
//! recipient; layers are encrypted to that key. The scrypt work factor is age's default
//! unless `CRYOPOD_AGE_WORK_FACTOR` (log2 N, 1..=30) lowers it, which tests do.

use std::io::{self, Read, Write};
use std::iter;

use age::secrecy::{ExposeSecret, SecretString};
use base64::Engine;

/// The env var that sets the scrypt work factor (log2 N) used when wrapping a pod key.
pub const WORK_FACTOR_ENV: &str = "CRYOPOD_AGE_WORK_FACTOR";

static WORK_FACTOR_OVERRIDE: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);

/// Sets the scrypt work factor (log2 N, 1..=30) for keys wrapped from now on in this
/// process, taking precedence over `CRYOPOD_AGE_WORK_FACTOR`; 0 restores the default. For
/// tests and embedders that cannot set the environment.
pub fn set_work_factor(log_n: u8) {
    WORK_FACTOR_OVERRIDE.store(log_n.min(30), std::sync::atomic::Ordering::Relaxed);
}

fn work_factor() -> Option<u8> {
    let o = WORK_FACTOR_OVERRIDE.load(std::sync::atomic::Ordering::Relaxed);
    if o > 0 {
        return Some(o);
    }
    std::env::var(WORK_FACTOR_ENV)
        .ok()
        .and_then(|v| v.trim().parse::<u8>().ok())
        .filter(|n| (1..=30).contains(n))
}

/// A pod key: encrypts and decrypts layers.
#[derive(Clone)]
pub struct PodKey {
    identity: age::x25519::Identity,
}

/// Why a pod key could not be unwrapped.
#[derive(Debug, thiserror::Error)]
pub enum UnwrapError {
    /// The passphrase does not open the key.
    #[error("the secret does not decrypt this pod")]
    WrongSecret,
    /// The stored key is damaged.
    #[error("the pod's wrapped key is damaged: {0}")]
    Damaged(String),
}

impl PodKey {
    /// A fresh random key.
    pub fn generate() -> Self {
        Self {
            identity: age::x25519::Identity::generate(),
        }
    }

    /// The public recipient string (`age1…`).
    pub fn recipient(&self) -> String {
        self.identity.to_public().to_string()
    }

    /// The key encrypted with `secret` (scrypt), base64.
    pub fn wrap(&self, secret: &str) -> io::Result<String> {
        self.wrap_with(secret, work_factor())
    }

    fn wrap_with(&self, secret: &str, work_factor: Option<u8>) -> io::Result<String> {
        let mut r = age::scrypt::Recipient::new(SecretString::from(secret.to_owned()));
        if let Some(n) = work_factor {
            r.set_work_factor(n);
        }
        let enc = age::Encryptor::with_recipients(iter::once(&r as &dyn age::Recipient))
            .map_err(io::Error::other)?;
        let mut out = Vec::new();
        let mut w = enc.wrap_output(&mut out)?;
        w.write_all(self.identity.to_string().expose_secret().as_bytes())?;
        w.finish()?;
        Ok(base64::engine::general_purpose::STANDARD.encode(out))
    }

    /// Opens a wrapped key with `secret`.
    pub fn unwrap(wrapped: &str, secret: &str) -> Result<Self, UnwrapError> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(wrapped.trim())
            .map_err(|e| UnwrapError::Damaged(e.to_string()))?;
        let dec =
            age::Decryptor::new(&bytes[..]).map_err(|e| UnwrapError::Damaged(e.to_string()))?;
        let mut id = age::scrypt::Identity::new(SecretString::from(secret.to_owned()));
        // Accept keys wrapped with any work factor up to age's own ceiling.
        id.set_max_work_factor(30);
        let mut r = match dec.decrypt(iter::once(&id as &dyn age::Identity)) {
            Ok(r) => r,
            Err(age::DecryptError::NoMatchingKeys) | Err(age::DecryptError::DecryptionFailed) => {
                return Err(UnwrapError::WrongSecret);
            }
            Err(e) => return Err(UnwrapError::Damaged(e.to_string())),
        };
        let mut s = String::new();
        r.read_to_string(&mut s)
            .map_err(|_| UnwrapError::WrongSecret)?;
        let identity = s
            .trim()
            .parse::<age::x25519::Identity>()
            .map_err(|e| UnwrapError::Damaged(e.to_string()))?;
        Ok(Self { identity })
    }

    /// Encrypts `input` into `output`.
    pub fn encrypt(&self, input: &mut dyn Read, output: &mut dyn Write) -> io::Result<()> {
        let recipient = self.identity.to_public();
        let enc = age::Encryptor::with_recipients(iter::once(&recipient as &dyn age::Recipient))
            .map_err(io::Error::other)?;
        let mut w = enc.wrap_output(output)?;
        io::copy(input, &mut w)?;
        w.finish()?;
        Ok(())
    }

    /// A reader of the plain content of an encrypted stream.
    pub fn decrypt<'a, R: Read + 'a>(&self, input: R) -> io::Result<Box<dyn Read + 'a>> {
        let dec = age::Decryptor::new(input).map_err(io::Error::other)?;
        let r = dec
            .decrypt(iter::once(&self.identity as &dyn age::Identity))
            .map_err(io::Error::other)?;
        Ok(Box::new(r))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wrapped_key_opens_only_with_its_secret() {
        let key = PodKey::generate();
        let wrapped = key.wrap_with("right", Some(4)).unwrap();
        assert!(matches!(
            PodKey::unwrap(&wrapped, "wrong"),
            Err(UnwrapError::WrongSecret)
        ));
        let back = PodKey::unwrap(&wrapped, "right").unwrap();
        assert_eq!(back.recipient(), key.recipient());
        let mut ct = Vec::new();
        key.encrypt(&mut &b"hello"[..], &mut ct).unwrap();
        let mut pt = String::new();
        back.decrypt(&ct[..])
            .unwrap()
            .read_to_string(&mut pt)
            .unwrap();
        assert_eq!(pt, "hello");
    }
}
