//! Replays the fuzzing inputs kept in the repository through the same entry points the
//! fuzz targets use (`jit_provision::fuzzing`): every file under `fuzz/regressions/<target>/`
//! (inputs that once crashed a target) and `fuzz/corpus/<target>/` (the seeds). None may
//! panic. Runs in the normal `cargo test`, no cargo-fuzz or nightly flags needed.

use std::fs;
use std::path::{Path, PathBuf};

/// The entry point of fuzz target `name`; `None` for one compiled out (`saml_response`
/// without the `saml` feature).
fn entry_point(name: &str) -> Option<fn(&[u8])> {
    Some(match name {
        "session_cookie" => jit_provision::fuzzing::session_cookie,
        "pending_cookie" => jit_provision::fuzzing::pending_cookie,
        "callback_params" => jit_provision::fuzzing::callback_params,
        "jwt" => jit_provision::fuzzing::jwt,
        "template" => jit_provision::fuzzing::template,
        #[cfg(feature = "saml")]
        "saml_response" => jit_provision::fuzzing::saml_response,
        #[cfg(not(feature = "saml"))]
        "saml_response" => return None,
        other => panic!("fuzz input directory `{other}` names no fuzz target"),
    })
}

/// `(target, file)` for every file under `<root>/<target>/` (sorted: a stable order).
fn inputs(root: &Path) -> Vec<(String, PathBuf)> {
    let mut found = Vec::new();
    let Ok(targets) = fs::read_dir(root) else {
        return found; // fuzz/regressions/ exists only once something was found
    };
    for target in targets {
        let target = target.expect("readable directory entry");
        if !target.file_type().expect("file type").is_dir() {
            continue;
        }
        let name = target.file_name().to_string_lossy().into_owned();
        for file in fs::read_dir(target.path()).expect("readable directory") {
            let file = file.expect("readable directory entry");
            if file.file_type().expect("file type").is_file() {
                found.push((name.clone(), file.path()));
            }
        }
    }
    found.sort();
    found
}

fn replay(dir: &str) -> usize {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz").join(dir);
    let mut replayed = 0;
    for (target, path) in inputs(&root) {
        let Some(run) = entry_point(&target) else {
            continue;
        };
        let data = fs::read(&path).expect("readable fuzz input");
        // A panic names the file: the input to look at.
        let outcome = std::panic::catch_unwind(|| run(&data));
        assert!(
            outcome.is_ok(),
            "fuzz target `{target}` panicked on {}",
            path.display()
        );
        replayed += 1;
    }
    replayed
}

#[test]
fn regressions_do_not_panic() {
    replay("regressions");
}

#[test]
fn seed_corpora_do_not_panic() {
    let replayed = replay("corpus");
    assert!(replayed >= 20, "only {replayed} seeds under fuzz/corpus/");
}
