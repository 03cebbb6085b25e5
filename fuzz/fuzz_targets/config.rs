//! `Config::from_yaml_str` on any text: never panics, never hangs; a config it
//! accepts is self-consistent (every backend reference resolves, names unique,
//! no zero timeout, `warnings()` runs), and a refusal carries at least one
//! located error. The structure-aware twin is `config_grammar`.
#![no_main]

use ftpsgate::config::Config;
use ftpsgate_fuzz::{check_config, config_dir};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(yaml) = std::str::from_utf8(data) else {
        return;
    };
    check_config(&Config::from_yaml_str(yaml, config_dir()));
});
