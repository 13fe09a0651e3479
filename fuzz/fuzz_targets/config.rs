//! The config file (`docs/fuzzing.md`): a host's typo must end in one clear line, never a
//! panic at start-up.
#![no_main]

use encore::config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Config::from_toml(text) {
        Ok(config) => {
            if let Err(e) = config.validate() {
                one_line(text, &e.to_string());
            }
        }
        Err(message) => one_line(text, &message),
    }
});

/// What `encore` prints before exiting: one line that says something.
fn one_line(text: &str, message: &str) {
    assert!(!message.trim().is_empty(), "{text:?}");
    assert!(!message.contains('\n'), "{text:?}: {message}");
}
