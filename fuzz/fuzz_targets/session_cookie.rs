#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    jit_provision::fuzzing::session_cookie(data);
});
