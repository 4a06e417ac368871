//! The sample configuration `examples/demo.toml` stays in step with `JitConfig`: it parses
//! with the demo's own loader, spells out every field, and shows the defaults it claims to.

use std::collections::BTreeMap;

use jit_provision::config::BearerConfig;
use jit_provision::store::MemoryStore;
use jit_provision::{JitConfig, JitLayer, ProviderConfig, Unauthenticated};

// The demo itself, compiled as a module, so these tests use its real `parse_config` (which
// strips the `[demo]` table) rather than a copy. Its `main` and handlers go unused here.
#[path = "../examples/demo.rs"]
#[allow(dead_code)]
mod demo;

const SAMPLE: &str = include_str!("../examples/demo.toml");

/// Every leaf of a TOML value by dotted path (`session.ttl_secs`, ...).
fn leaves(value: &toml::Value, prefix: &str, out: &mut BTreeMap<String, toml::Value>) {
    match value {
        toml::Value::Table(table) => {
            for (key, value) in table {
                let path = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                leaves(value, &path, out);
            }
        }
        leaf => {
            out.insert(prefix.to_owned(), leaf.clone());
        }
    }
}

fn flat(config: &JitConfig) -> BTreeMap<String, toml::Value> {
    let mut out = BTreeMap::new();
    leaves(
        &toml::Value::try_from(config).expect("JitConfig serializes to TOML"),
        "",
        &mut out,
    );
    out
}

#[test]
fn sample_parses_and_builds_a_layer() {
    let (config, demo) = demo::parse_config(SAMPLE).expect("examples/demo.toml parses");
    assert_eq!(config.public_url, "http://127.0.0.1:3000");
    assert_eq!(
        config.session.unauthenticated,
        Unauthenticated::RedirectToLogin("keycloak".into())
    );
    let keycloak = &config.providers["keycloak"];
    assert_eq!(keycloak.mapping.groups.as_ref().unwrap().claim, "groups");
    assert_eq!(
        keycloak.client_secret.as_ref().map(|s| s.expose()),
        Some("CHANGE-ME")
    );
    assert_eq!(demo.listen.as_deref(), Some("127.0.0.1:3000"));
    assert_eq!(demo.database_url.as_deref(), Some("sqlite://jit-demo.db"));
    assert!(!demo.dev_idp);
    JitLayer::from_config(config, MemoryStore::new()).expect("the layer accepts the sample");
}

/// The sample with its commented-out optional settings (`#key = value`, `#[table]`) turned on.
fn everything_on() -> String {
    let uncomment = |line: &str| match line.strip_prefix('#') {
        Some(rest) if rest.starts_with(|c: char| c.is_ascii_lowercase() || c == '[') => {
            rest.to_owned()
        }
        _ => line.to_owned(),
    };
    SAMPLE.lines().map(uncomment).collect::<Vec<_>>().join("\n")
}

/// Every `examples/*.toml` loads with the demo's loader and builds a layer, and the banner
/// names, for each provider, what to register at its IdP.
#[test]
fn every_example_config_builds_a_layer() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut built = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&path).unwrap();
        if !cfg!(feature = "saml") && text.contains(".saml]") {
            eprintln!("{name}: needs the `saml` feature, not built");
            continue;
        }
        let (config, _) =
            demo::parse_config(&text).unwrap_or_else(|e| panic!("examples/{name}: {e}"));
        let jit = JitLayer::from_config(config.clone(), MemoryStore::new())
            .unwrap_or_else(|e| panic!("examples/{name}: {e}"));
        let banner = demo::provider_lines(&config, &jit).join("\n");
        for id in config.providers.keys() {
            let base = format!("{}{}/{id}", config.public_url, config.path_prefix);
            let expected: Vec<String> = if jit.redirect_uri(id).is_some() {
                vec![format!("redirect URI         {base}/callback")]
            } else {
                vec![
                    format!("ACS URL (HTTP-POST)  {base}/acs"),
                    format!("SP entity ID         {base}/metadata"),
                    format!("SP metadata          {base}/metadata"),
                ]
            };
            for line in expected {
                assert!(
                    banner.contains(&line),
                    "examples/{name}: {line:?} in\n{banner}"
                );
                // The file's own instructions name the same URLs.
                let url = line.rsplit(' ').next().unwrap();
                assert!(text.contains(url), "examples/{name} does not mention {url}");
            }
        }
        built.push(name);
    }
    built.sort();
    let mut expected = vec!["demo.toml"];
    if cfg!(feature = "saml") {
        expected.push("saml.toml");
    }
    assert_eq!(built, expected);
}

/// An http:// public URL needs `session.secure = false`: the layer says so at start.
#[test]
fn an_http_public_url_with_secure_cookies_is_refused_at_start() {
    let (mut config, _) = demo::parse_config(SAMPLE).unwrap();
    config.session.secure = true;
    let err = JitLayer::from_config(config, MemoryStore::new()).unwrap_err();
    let message = err.to_string();
    assert!(message.contains("session.secure = false"), "{message}");
    assert!(message.contains("http://127.0.0.1:3000"), "{message}");
}

#[test]
fn sample_spells_out_every_field() {
    // Serializing skips `None` fields, so compare with every optional setting turned on: then
    // every field of JitConfig must appear in the file, and nothing else.
    let full = everything_on();
    let (config, _) = demo::parse_config(&full).expect("the commented-out settings parse");
    let bearer = config.providers["keycloak"]
        .bearer
        .as_ref()
        .expect("bearer");
    assert!(bearer.mapping.is_some() && config.session.key.is_some());
    let defaults = BearerConfig::new(bearer.audiences.clone());
    assert_eq!(bearer.algorithms, defaults.algorithms);
    assert_eq!(bearer.required_claims, defaults.required_claims);
    assert_eq!(bearer.jwks_ttl_secs, defaults.jwks_ttl_secs);
    assert_eq!(bearer.token_cache_ttl_secs, defaults.token_cache_ttl_secs);
    assert_eq!(
        bearer.token_types,
        ["at+jwt", "JWT"],
        "as the sample says, for Keycloak"
    );
    assert_eq!(
        (bearer.link, bearer.update_attributes),
        (defaults.link, defaults.update_attributes)
    );
    let mut written: toml::Table = toml::from_str(&full).unwrap();
    written.remove("demo");
    let mut in_file = BTreeMap::new();
    leaves(&toml::Value::Table(written), "", &mut in_file);
    let in_file: Vec<_> = in_file.into_keys().collect();
    let fields: Vec<_> = flat(&config).into_keys().collect();
    assert_eq!(in_file, fields);
}

#[test]
fn sample_values_are_the_defaults_but_where_it_says_otherwise() {
    let (sample, _) = demo::parse_config(SAMPLE).unwrap();
    let keycloak = &sample.providers["keycloak"];
    let mut defaults = JitConfig::new(&sample.public_url);
    defaults.providers.insert(
        "keycloak".into(),
        ProviderConfig::new(keycloak.issuer(), keycloak.client_id()),
    );
    let (sample, defaults) = (flat(&sample), flat(&defaults));
    let differing: Vec<&str> = (sample.keys().chain(defaults.keys()))
        .filter(|k| sample.get(*k) != defaults.get(*k))
        .map(String::as_str)
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(
        differing,
        [
            "providers.keycloak.admission.require_groups",
            "providers.keycloak.client_secret",
            "providers.keycloak.display_name",
            "providers.keycloak.mapping.groups.allow",
            "providers.keycloak.mapping.groups.claim",
            "providers.keycloak.mapping.groups.when_absent",
            "providers.keycloak.roles.default",
            "providers.keycloak.roles.mode",
            "providers.keycloak.roles.rules",
            "providers.keycloak.roles.strict",
            "session.secure",
            "session.unauthenticated.action",
            "session.unauthenticated.provider",
        ]
    );
}

#[test]
fn demo_table_is_optional_and_typos_are_refused() {
    let (config, demo) = demo::parse_config("public_url = \"https://app.example.com\"").unwrap();
    assert_eq!(config.path_prefix, "/auth");
    assert!(demo.listen.is_none() && demo.database_url.is_none() && !demo.dev_idp);

    let (config, _) = demo::parse_config(
        "public_url = \"https://app.example.com\"\n[session]\nunauthenticated = { action = \"status\" }",
    )
    .unwrap();
    assert_eq!(config.session.unauthenticated, Unauthenticated::Status);

    for typo in [
        "public_url = \"https://a.example\"\n[demo]\nlisten_on = \"127.0.0.1:3000\"",
        "public_url = \"https://a.example\"\npath_prefx = \"/auth\"",
        "public_url = \"https://a.example\"\n[providers.x]\nissuer = \"https://i\"\nclient_id = \"c\"\nscope = []",
    ] {
        assert!(demo::parse_config(typo).is_err(), "accepted {typo:?}");
    }
}

/// The development IdP logs in whoever you say: the library's default features leave it
/// out, while the crate's own targets get it from the dev-dependency on the crate itself, so
/// `cargo run --example demo` and `cargo test` need no flag. Every example, test and bench
/// that requires `dev-idp` therefore finds it among the defaults plus that dev-dependency
/// (the PostgreSQL test also needs `--features postgres`).
#[test]
fn dev_idp_is_off_by_default_and_on_for_the_crates_own_targets() {
    let manifest: toml::Value =
        toml::from_str(include_str!("../Cargo.toml")).expect("Cargo.toml parses");
    let strings = |v: Option<&toml::Value>| -> Vec<String> {
        v.and_then(toml::Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    let defaults = strings(manifest["features"].get("default"));
    assert!(!defaults.contains(&"dev-idp".to_owned()), "{defaults:?}");
    let own = &manifest["dev-dependencies"]["jit-provision"];
    assert_eq!(own["path"].as_str(), Some("."));
    assert!(
        own.get("version").is_none(),
        "path only: `cargo package` drops it"
    );
    let dev_features = strings(own.get("features"));
    assert!(dev_features.contains(&"dev-idp".to_owned()));
    let available: Vec<&String> = defaults.iter().chain(&dev_features).collect();
    let mut checked = 0;
    for kind in ["example", "test", "bench"] {
        for target in manifest
            .get(kind)
            .and_then(toml::Value::as_array)
            .into_iter()
            .flatten()
        {
            let required = strings(target.get("required-features"));
            if required.contains(&"dev-idp".to_owned()) {
                checked += 1;
                // Besides the defaults and the dev-dependency's `dev-idp`, only the features
                // that need an outside service or C libraries are opted into by a flag
                // (`--all-features`, as CI and scripts/test run): the PostgreSQL tests.
                for feature in required.iter().filter(|f| *f != "postgres") {
                    assert!(
                        available.contains(&feature),
                        "{kind} {} needs `{feature}`, which only a flag turns on",
                        target["name"]
                    );
                }
            }
        }
    }
    assert!(checked >= 2, "the demo and the benches require dev-idp");
    // And this binary, as `cargo test` builds it (no flag), has it: the demo compiled in
    // as a module above uses `jit_provision::dev_idp`.
}
