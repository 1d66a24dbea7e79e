//! Tree decoding never panics, and every accepted name is a safe path component.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(tree) = kura_core::tree::Tree::decode(data) {
        for n in &tree.nodes {
            assert!(kura_core::tree::is_safe_name(&n.name));
        }
    }
});
