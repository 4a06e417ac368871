//! `saml:EncryptedAssertion` (XML Encryption) decrypted with the service provider's RSA key,
//! through OpenSSL.
//!
//! Key transport: RSA-OAEP (`rsa-oaep-mgf1p`, and XML Encryption 1.1 `rsa-oaep` with a
//! SHA-1/SHA-2 digest and MGF1). RSA PKCS#1 v1.5 (`rsa-1_5`) is refused: it is the
//! Bleichenbacher oracle of "How to break XML Encryption". Content: AES-GCM and AES-CBC
//! (128/192/256). Every failure is the same [`SamlError::Decryption`], whatever step failed,
//! so that no padding or parsing oracle is exposed by the error.

use base64::Engine as _;
use openssl::md::{Md, MdRef};
use openssl::pkey::{PKey, Private};
use openssl::pkey_ctx::PkeyCtx;
use openssl::rsa::Padding;
use openssl::symm::{Cipher, Crypter, Mode, decrypt_aead};
use roxmltree::Node;

use super::SamlError;
use super::xml::{NS_DSIG, NS_XENC, NS_XENC11, children, full_text, is};

/// Most `EncryptedKey` elements tried.
const MAX_KEYS: usize = 4;

/// Decrypts the `EncryptedData` of `encrypted_assertion` and returns the plaintext XML.
pub(crate) fn decrypt_assertion(
    encrypted_assertion: Node<'_, '_>,
    key: &PKey<Private>,
) -> Result<String, SamlError> {
    let data = children(encrypted_assertion, NS_XENC, "EncryptedData")
        .next()
        .ok_or(SamlError::Decryption)?;
    let cipher = content_cipher(algorithm(method(data)?)?)?;
    let ciphertext = cipher_value(data)?;
    // EncryptedKey inside EncryptedData/KeyInfo, or beside EncryptedData.
    let key_info = children(data, NS_DSIG, "KeyInfo").next();
    let keys = key_info
        .into_iter()
        .flat_map(|k| children(k, NS_XENC, "EncryptedKey"))
        .chain(children(encrypted_assertion, NS_XENC, "EncryptedKey"))
        .take(MAX_KEYS);
    for encrypted_key in keys {
        let Ok(content_key) = unwrap_key(encrypted_key, key) else {
            continue;
        };
        if content_key.len() != cipher.key_len() {
            continue;
        }
        return decrypt_content(cipher, &content_key, &ciphertext)
            .and_then(|plain| String::from_utf8(plain).map_err(|_| SamlError::Decryption));
    }
    Err(SamlError::Decryption)
}

#[derive(Clone, Copy)]
enum ContentCipher {
    Gcm(Cipher),
    Cbc(Cipher),
}

impl ContentCipher {
    fn key_len(self) -> usize {
        match self {
            Self::Gcm(c) | Self::Cbc(c) => c.key_len(),
        }
    }
}

fn content_cipher(uri: &str) -> Result<ContentCipher, SamlError> {
    Ok(match uri {
        "http://www.w3.org/2009/xmlenc11#aes128-gcm" => ContentCipher::Gcm(Cipher::aes_128_gcm()),
        "http://www.w3.org/2009/xmlenc11#aes192-gcm" => ContentCipher::Gcm(Cipher::aes_192_gcm()),
        "http://www.w3.org/2009/xmlenc11#aes256-gcm" => ContentCipher::Gcm(Cipher::aes_256_gcm()),
        "http://www.w3.org/2001/04/xmlenc#aes128-cbc" => ContentCipher::Cbc(Cipher::aes_128_cbc()),
        "http://www.w3.org/2001/04/xmlenc#aes192-cbc" => ContentCipher::Cbc(Cipher::aes_192_cbc()),
        "http://www.w3.org/2001/04/xmlenc#aes256-cbc" => ContentCipher::Cbc(Cipher::aes_256_cbc()),
        _ => return Err(SamlError::Decryption),
    })
}

fn decrypt_content(cipher: ContentCipher, key: &[u8], data: &[u8]) -> Result<Vec<u8>, SamlError> {
    match cipher {
        ContentCipher::Gcm(c) => {
            // IV (12 bytes) || ciphertext || tag (16 bytes).
            const IV: usize = 12;
            const TAG: usize = 16;
            if data.len() < IV + TAG {
                return Err(SamlError::Decryption);
            }
            let (iv, rest) = data.split_at(IV);
            let (body, tag) = rest.split_at(rest.len() - TAG);
            decrypt_aead(c, key, Some(iv), &[], body, tag).map_err(|_| SamlError::Decryption)
        }
        ContentCipher::Cbc(c) => {
            // IV (16 bytes) || ciphertext; XML Encryption padding: the last byte is the
            // padding length, the other padding bytes are arbitrary (not PKCS#7).
            const BLOCK: usize = 16;
            if data.len() < 2 * BLOCK || !data.len().is_multiple_of(BLOCK) {
                return Err(SamlError::Decryption);
            }
            let (iv, body) = data.split_at(BLOCK);
            let mut crypter =
                Crypter::new(c, Mode::Decrypt, key, Some(iv)).map_err(|_| SamlError::Decryption)?;
            crypter.pad(false);
            let mut out = vec![0; body.len() + BLOCK];
            let mut n = crypter
                .update(body, &mut out)
                .map_err(|_| SamlError::Decryption)?;
            n += crypter
                .finalize(&mut out[n..])
                .map_err(|_| SamlError::Decryption)?;
            out.truncate(n);
            let pad = usize::from(*out.last().ok_or(SamlError::Decryption)?);
            if pad == 0 || pad > BLOCK || pad > out.len() {
                return Err(SamlError::Decryption);
            }
            out.truncate(out.len() - pad);
            Ok(out)
        }
    }
}

/// RSA-OAEP key transport.
fn unwrap_key(encrypted_key: Node<'_, '_>, key: &PKey<Private>) -> Result<Vec<u8>, SamlError> {
    let method = method(encrypted_key)?;
    let digest = children(method, NS_DSIG, "DigestMethod")
        .next()
        .map(algorithm)
        .transpose()?
        .map(digest_md)
        .transpose()?
        .unwrap_or(Md::sha1());
    let mgf = match algorithm(method)? {
        "http://www.w3.org/2001/04/xmlenc#rsa-oaep-mgf1p" => Md::sha1(),
        "http://www.w3.org/2009/xmlenc11#rsa-oaep" => children(method, NS_XENC11, "MGF")
            .next()
            .map(algorithm)
            .transpose()?
            .map(mgf_md)
            .transpose()?
            .unwrap_or(Md::sha1()),
        _ => return Err(SamlError::Decryption),
    };
    let wrapped = cipher_value(encrypted_key)?;
    let mut ctx = PkeyCtx::new(key).map_err(|_| SamlError::Decryption)?;
    let mut out = Vec::new();
    ctx.decrypt_init()
        .and_then(|()| ctx.set_rsa_padding(Padding::PKCS1_OAEP))
        .and_then(|()| ctx.set_rsa_oaep_md(digest))
        .and_then(|()| ctx.set_rsa_mgf1_md(mgf))
        .and_then(|()| ctx.decrypt_to_vec(&wrapped, &mut out))
        .map_err(|_| SamlError::Decryption)?;
    Ok(out)
}

fn digest_md(uri: &str) -> Result<&'static MdRef, SamlError> {
    Ok(match uri {
        "http://www.w3.org/2000/09/xmldsig#sha1" => Md::sha1(),
        "http://www.w3.org/2001/04/xmlenc#sha256" => Md::sha256(),
        "http://www.w3.org/2001/04/xmldsig-more#sha384" => Md::sha384(),
        "http://www.w3.org/2001/04/xmlenc#sha512" => Md::sha512(),
        _ => return Err(SamlError::Decryption),
    })
}

fn mgf_md(uri: &str) -> Result<&'static MdRef, SamlError> {
    Ok(match uri {
        "http://www.w3.org/2009/xmlenc11#mgf1sha1" => Md::sha1(),
        "http://www.w3.org/2009/xmlenc11#mgf1sha256" => Md::sha256(),
        "http://www.w3.org/2009/xmlenc11#mgf1sha384" => Md::sha384(),
        "http://www.w3.org/2009/xmlenc11#mgf1sha512" => Md::sha512(),
        _ => return Err(SamlError::Decryption),
    })
}

fn method<'a, 'input>(node: Node<'a, 'input>) -> Result<Node<'a, 'input>, SamlError> {
    children(node, NS_XENC, "EncryptionMethod")
        .next()
        .ok_or(SamlError::Decryption)
}

fn algorithm<'a>(node: Node<'a, '_>) -> Result<&'a str, SamlError> {
    node.attribute("Algorithm").ok_or(SamlError::Decryption)
}

fn cipher_value(node: Node<'_, '_>) -> Result<Vec<u8>, SamlError> {
    let value = children(node, NS_XENC, "CipherData")
        .next()
        .and_then(|d| d.children().find(|c| is(*c, NS_XENC, "CipherValue")))
        .and_then(full_text)
        .ok_or(SamlError::Decryption)?;
    let compact: String = value.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    base64::engine::general_purpose::STANDARD
        .decode(compact.as_bytes())
        .map_err(|_| SamlError::Decryption)
}
