//! `saml:EncryptedAssertion` (XML Encryption) decrypted with the service provider's RSA key,
//! through OpenSSL.
//!
//! Key transport: RSA-OAEP (`rsa-oaep-mgf1p`, and XML Encryption 1.1 `rsa-oaep` with a
//! SHA-1/SHA-2 digest and MGF1). RSA PKCS#1 v1.5 (`rsa-1_5`) is refused: it is the
//! Bleichenbacher oracle of "How to Break XML Encryption". A refused algorithm (key
//! transport or content, `tripledes-cbc` say) is [`SamlError::EncryptionAlgorithm`], naming
//! its URI, decided from the URIs before any key is used: the URIs are what the sender
//! wrote, so naming them tells nobody anything about a plaintext. Content: AES-GCM (128/192/256),
//! always; AES-CBC (128/192/256) only when the enclosing `Response`'s signature verified
//! first ([`Integrity::SignedResponse`]). CBC has no integrity of its own: decrypting an
//! attacker's modified ciphertext and answering differently for bad padding and for bad XML
//! is the oracle of Jager & Somorovsky (CCS 2011), which reveals the plaintext byte by byte;
//! and since the content key can be reused under another algorithm URI, an unsigned
//! ciphertext is never decrypted as CBC. That refusal ([`SamlError::CbcWithoutSignedResponse`])
//! comes before the key is unwrapped; every later failure here is the same
//! [`SamlError::Decryption`].

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

/// What vouches for the bytes of an `EncryptedAssertion` before it is decrypted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Integrity {
    /// The enclosing `Response`'s signature verified, and the `EncryptedAssertion` is read
    /// from the verified bytes: nobody but the IdP chose the ciphertext or its algorithm.
    /// AES-GCM and AES-CBC are decrypted.
    SignedResponse,
    /// Nothing: only AES-GCM is decrypted, whose tag is checked before any plaintext comes
    /// out.
    Unsigned,
}

/// Decrypts the `EncryptedData` of `encrypted_assertion` and returns the plaintext XML.
///
/// Decided from the algorithm URIs alone, before `key` is used (or needed): a content or
/// key-transport algorithm that is not accepted is [`SamlError::EncryptionAlgorithm`], a CBC
/// ciphertext without [`Integrity::SignedResponse`] is [`SamlError::CbcWithoutSignedResponse`].
/// Every later failure is [`SamlError::Decryption`].
pub(crate) fn decrypt_assertion(
    encrypted_assertion: Node<'_, '_>,
    key: Option<&PKey<Private>>,
    integrity: Integrity,
) -> Result<String, SamlError> {
    let data = children(encrypted_assertion, NS_XENC, "EncryptedData")
        .next()
        .ok_or(SamlError::Decryption)?;
    let cipher = content_cipher(algorithm(method(data)?)?)?;
    if !cipher.authenticated() && integrity != Integrity::SignedResponse {
        return Err(SamlError::CbcWithoutSignedResponse);
    }
    // EncryptedKey inside EncryptedData/KeyInfo, or beside EncryptedData; every one's
    // algorithms are checked before any is used.
    let key_info = children(data, NS_DSIG, "KeyInfo").next();
    let keys = key_info
        .into_iter()
        .flat_map(|k| children(k, NS_XENC, "EncryptedKey"))
        .chain(children(encrypted_assertion, NS_XENC, "EncryptedKey"))
        .take(MAX_KEYS)
        .map(|k| Ok((k, key_transport(k)?)))
        .collect::<Result<Vec<_>, SamlError>>()?;
    let key = key.ok_or(SamlError::Decryption)?;
    let ciphertext = cipher_value(data)?;
    for (encrypted_key, transport) in keys {
        let Ok(content_key) = unwrap_key(encrypted_key, transport, key) else {
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
    /// Whether the cipher checks the ciphertext's integrity itself (AEAD).
    fn authenticated(self) -> bool {
        matches!(self, Self::Gcm(_))
    }

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
        other => return Err(SamlError::EncryptionAlgorithm(other.to_owned())),
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

/// An `EncryptedKey`'s RSA-OAEP parameters: the OAEP digest and the MGF1 digest.
#[derive(Clone, Copy)]
struct KeyTransport {
    digest: &'static MdRef,
    mgf: &'static MdRef,
}

/// The key transport of `encrypted_key`: RSA-OAEP only (`rsa-1_5` and anything else are
/// [`SamlError::EncryptionAlgorithm`]), with an accepted digest and MGF.
fn key_transport(encrypted_key: Node<'_, '_>) -> Result<KeyTransport, SamlError> {
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
        other => return Err(SamlError::EncryptionAlgorithm(other.to_owned())),
    };
    Ok(KeyTransport { digest, mgf })
}

/// RSA-OAEP key transport.
fn unwrap_key(
    encrypted_key: Node<'_, '_>,
    transport: KeyTransport,
    key: &PKey<Private>,
) -> Result<Vec<u8>, SamlError> {
    let wrapped = cipher_value(encrypted_key)?;
    let mut ctx = PkeyCtx::new(key).map_err(|_| SamlError::Decryption)?;
    let mut out = Vec::new();
    ctx.decrypt_init()
        .and_then(|()| ctx.set_rsa_padding(Padding::PKCS1_OAEP))
        .and_then(|()| ctx.set_rsa_oaep_md(transport.digest))
        .and_then(|()| ctx.set_rsa_mgf1_md(transport.mgf))
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
        other => return Err(SamlError::EncryptionAlgorithm(other.to_owned())),
    })
}

fn mgf_md(uri: &str) -> Result<&'static MdRef, SamlError> {
    Ok(match uri {
        "http://www.w3.org/2009/xmlenc11#mgf1sha1" => Md::sha1(),
        "http://www.w3.org/2009/xmlenc11#mgf1sha256" => Md::sha256(),
        "http://www.w3.org/2009/xmlenc11#mgf1sha384" => Md::sha384(),
        "http://www.w3.org/2009/xmlenc11#mgf1sha512" => Md::sha512(),
        other => return Err(SamlError::EncryptionAlgorithm(other.to_owned())),
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

#[cfg(test)]
mod tests {
    use openssl::pkey_ctx::PkeyCtx;
    use openssl::rsa::Rsa;
    use openssl::symm::{encrypt, encrypt_aead};

    use super::*;

    const CBC: &str = "http://www.w3.org/2001/04/xmlenc#aes128-cbc";
    const GCM: &str = "http://www.w3.org/2009/xmlenc11#aes128-gcm";
    const PLAINTEXT: &str = "<saml:Assertion/>";

    fn b64(bytes: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    /// An `EncryptedAssertion` of [`PLAINTEXT`] under `algorithm`, its key sent to `to`.
    fn encrypted(algorithm: &str, to: &PKey<Private>) -> String {
        let key = [7u8; 16];
        let data = if algorithm == CBC {
            let iv = [1u8; 16];
            [
                &iv[..],
                &encrypt(Cipher::aes_128_cbc(), &key, Some(&iv), PLAINTEXT.as_bytes()).unwrap(),
            ]
            .concat()
        } else {
            let iv = [2u8; 12];
            let mut tag = [0; 16];
            let body = encrypt_aead(
                Cipher::aes_128_gcm(),
                &key,
                Some(&iv),
                &[],
                PLAINTEXT.as_bytes(),
                &mut tag,
            )
            .unwrap();
            [&iv[..], &body, &tag].concat()
        };
        let mut ctx = PkeyCtx::new(to).unwrap();
        ctx.encrypt_init().unwrap();
        ctx.set_rsa_padding(Padding::PKCS1_OAEP).unwrap();
        let mut wrapped = Vec::new();
        ctx.encrypt_to_vec(&key, &mut wrapped).unwrap();
        format!(
            concat!(
                r#"<EncryptedAssertion xmlns:xenc="{xenc}" xmlns:ds="{ds}"><xenc:EncryptedData>"#,
                r#"<xenc:EncryptionMethod Algorithm="{algorithm}"/><ds:KeyInfo><xenc:EncryptedKey>"#,
                r#"<xenc:EncryptionMethod Algorithm="http://www.w3.org/2001/04/xmlenc#rsa-oaep-mgf1p"/>"#,
                r#"<xenc:CipherData><xenc:CipherValue>{key}</xenc:CipherValue></xenc:CipherData>"#,
                r#"</xenc:EncryptedKey></ds:KeyInfo><xenc:CipherData><xenc:CipherValue>{data}</xenc:CipherValue>"#,
                r#"</xenc:CipherData></xenc:EncryptedData></EncryptedAssertion>"#
            ),
            xenc = NS_XENC,
            ds = NS_DSIG,
            algorithm = algorithm,
            key = b64(&wrapped),
            data = b64(&data),
        )
    }

    fn decrypt(
        xml: &str,
        key: Option<&PKey<Private>>,
        integrity: Integrity,
    ) -> Result<String, SamlError> {
        let doc = roxmltree::Document::parse(xml).unwrap();
        decrypt_assertion(doc.root_element(), key, integrity)
    }

    #[test]
    fn cbc_only_out_of_a_verified_response_gcm_always() {
        let key = PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap();
        let cbc = encrypted(CBC, &key);
        let gcm = encrypted(GCM, &key);
        assert_eq!(
            decrypt(&cbc, Some(&key), Integrity::SignedResponse).unwrap(),
            PLAINTEXT
        );
        assert_eq!(
            decrypt(&gcm, Some(&key), Integrity::SignedResponse).unwrap(),
            PLAINTEXT
        );
        assert_eq!(
            decrypt(&gcm, Some(&key), Integrity::Unsigned).unwrap(),
            PLAINTEXT
        );
        // Refused from the algorithm alone: with the key, without it, with any ciphertext.
        for key in [Some(&key), None] {
            assert_eq!(
                decrypt(&cbc, key, Integrity::Unsigned).unwrap_err(),
                SamlError::CbcWithoutSignedResponse
            );
        }
        // A refused algorithm is named, without a key and whatever the ciphertext.
        let des = "http://www.w3.org/2001/04/xmlenc#tripledes-cbc";
        let rsa_1_5 = "http://www.w3.org/2001/04/xmlenc#rsa-1_5";
        for integrity in [Integrity::SignedResponse, Integrity::Unsigned] {
            assert_eq!(
                decrypt(&gcm.replace(GCM, des), None, integrity).unwrap_err(),
                SamlError::EncryptionAlgorithm(des.into())
            );
            let one_5 = gcm.replace("http://www.w3.org/2001/04/xmlenc#rsa-oaep-mgf1p", rsa_1_5);
            assert_eq!(
                decrypt(&one_5, Some(&key), integrity).unwrap_err(),
                SamlError::EncryptionAlgorithm(rsa_1_5.into())
            );
        }
        let garbage = cbc.replace("<xenc:CipherValue>", "<xenc:CipherValue>%%%");
        assert_eq!(
            decrypt(&garbage, Some(&key), Integrity::Unsigned).unwrap_err(),
            SamlError::CbcWithoutSignedResponse
        );
        assert_eq!(
            decrypt(&garbage, Some(&key), Integrity::SignedResponse).unwrap_err(),
            SamlError::Decryption
        );
    }
}
