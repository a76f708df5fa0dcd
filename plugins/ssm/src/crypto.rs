//! SecureString sealing: AES-256-GCM (RustCrypto's `aes-gcm`) under a data key per KMS key
//! id, kept in the scope's state so that values open again after a restore.
//!
//! This is the seam for the KMS plugin: [`seal`] and [`open`] take the key id the request
//! named. Once KMS runs, they ask it (through the framework's service lookup) for a data key
//! of that KMS key instead of keeping one here; nothing else in the plugin changes.

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use rand::RngCore;

use crate::error::SsmError;
use crate::state::{DataKey, Sealed, SsmScope};

/// The key id AWS uses when a SecureString names none.
pub const DEFAULT_KEY_ID: &str = "alias/aws/ssm";

/// Seals `plaintext` for `key_id`, creating that key id's data key in `scope` on first use.
pub fn seal(scope: &mut SsmScope, key_id: &str, plaintext: &str) -> Result<Sealed, SsmError> {
    let existing = scope
        .keys
        .iter()
        .find(|(_, k)| k.key_id == key_id)
        .map(|(id, _)| id.clone());
    let key = match existing {
        Some(id) => id,
        None => {
            let mut material = vec![0u8; 32];
            let mut id = [0u8; 16];
            let mut rng = rand::rng();
            rng.fill_bytes(&mut material);
            rng.fill_bytes(&mut id);
            let id = hex_id(&id);
            scope.keys.insert(
                id.clone(),
                DataKey {
                    key_id: key_id.to_string(),
                    material,
                },
            );
            id
        }
    };
    let cipher = cipher(scope, &key)?;
    let mut nonce = vec![0u8; 12];
    rand::rng().fill_bytes(&mut nonce);
    let ciphertext = cipher
        .encrypt(Nonce::from_slice(&nonce), plaintext.as_bytes())
        .map_err(|_| SsmError::Internal("the value could not be encrypted".into()))?;
    Ok(Sealed {
        key,
        nonce,
        ciphertext,
    })
}

/// Opens a sealed value with the data key it names.
pub fn open(scope: &SsmScope, sealed: &Sealed) -> Result<String, SsmError> {
    if sealed.nonce.len() != 12 {
        return Err(SsmError::InvalidKeyId(
            "the stored value is damaged and cannot be decrypted".into(),
        ));
    }
    let plain = cipher(scope, &sealed.key)?
        .decrypt(
            Nonce::from_slice(&sealed.nonce),
            sealed.ciphertext.as_slice(),
        )
        .map_err(|_| SsmError::InvalidKeyId("the value cannot be decrypted with its key".into()))?;
    String::from_utf8(plain)
        .map_err(|_| SsmError::Internal("a decrypted value is not UTF-8".into()))
}

fn cipher(scope: &SsmScope, key: &str) -> Result<Aes256Gcm, SsmError> {
    let k = scope.keys.get(key).ok_or_else(|| {
        SsmError::InvalidKeyId(format!(
            "the data key {key} of this value is not in this state"
        ))
    })?;
    Aes256Gcm::new_from_slice(&k.material)
        .map_err(|_| SsmError::InvalidKeyId(format!("the data key {key} is damaged")))
}

fn hex_id(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_and_are_not_plaintext() {
        let mut scope = SsmScope::default();
        let a = seal(&mut scope, DEFAULT_KEY_ID, "hunter2").expect("seal");
        let b = seal(&mut scope, DEFAULT_KEY_ID, "hunter2").expect("seal");
        assert_eq!(scope.keys.len(), 1, "one data key per key id");
        assert_ne!(a.nonce, b.nonce);
        assert!(!a.ciphertext.windows(7).any(|w| w == b"hunter2"));
        assert_eq!(open(&scope, &a).expect("open"), "hunter2");
        seal(&mut scope, "alias/other", "x").expect("seal");
        assert_eq!(scope.keys.len(), 2);
        let mut tampered = a.clone();
        tampered.ciphertext[0] ^= 1;
        assert_eq!(open(&scope, &tampered).unwrap_err().code(), "InvalidKeyId");
        assert!(!format!("{:?}", scope.keys).contains(&format!(
            "{:?}",
            scope.keys.values().next().map(|k| &k.material)
        )));
    }
}
