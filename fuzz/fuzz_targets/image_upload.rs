//! Uploaded images: ingest's type check (`tally_media::sniff`) and the thumbnail job's bounded
//! decoding and rendering (`tally_media::render`, with the workers' own limits). Properties:
//! no panic, no allocation beyond the limits (deploy/fuzz.sh runs this target with
//! `-malloc_limit_mb`); whatever renders is an upload ingest accepts; every variant fits its
//! box (the thumbnail fills it); stripping metadata keeps the type, never grows the file, and
//! a second strip changes nothing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tally_media::{VARIANTS, render, sniff, strip_metadata};

fuzz_target!(|data: &[u8]| {
    let sniffed = sniff(data);
    if let Ok(stripped) = strip_metadata(data) {
        assert_eq!(sniff(&stripped), sniffed, "stripping changed the type");
        assert!(stripped.len() <= data.len(), "stripping grew the file");
        assert_eq!(
            strip_metadata(&stripped).as_ref(),
            Ok(&stripped),
            "a second strip changed something"
        );
    }
    let Ok(variants) = render(data) else {
        return;
    };
    assert!(
        sniffed.is_some(),
        "the workers render bytes that ingest refuses"
    );
    for (name, width, height, crop) in VARIANTS {
        let v = &variants[name];
        assert!(v.width >= 1 && v.height >= 1, "{name} is empty");
        assert!(
            v.width <= width && v.height <= height,
            "{name} overflows its box"
        );
        if crop {
            assert_eq!(
                (v.width, v.height),
                (width, height),
                "{name} does not fill its box"
            );
        }
        assert_eq!(v.bytes, v.data.len());
    }
});
