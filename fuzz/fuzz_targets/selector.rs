//! Selectors, demands and durations as a configuration writes them: each parses or is
//! refused, and what parses prints back as text that parses to the same thing.
#![no_main]
use libfuzzer_sys::fuzz_target;
use prescale_core::selector::{parse_duration_ms, Demand, DemandExpr, Selector};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let _ = parse_duration_ms(s);
    if let Ok(sel) = Selector::parse(s) {
        let again = Selector::parse(&sel.to_string())
            .unwrap_or_else(|e| panic!("{s:?} printed as {:?}, which fails: {e}", sel.to_string()));
        assert_eq!(sel, again, "{s:?} printed as {:?}", sel.to_string());
    }
    if let Ok(e) = DemandExpr::parse(s) {
        let again = DemandExpr::parse(&e.to_string()).unwrap_or_else(|err| {
            panic!("{s:?} printed as {:?}, which fails: {err}", e.to_string())
        });
        assert_eq!(e, again, "{s:?} printed as {:?}", e.to_string());
    }
    if let Ok(d) = Demand::parse(s) {
        let again = Demand::parse(&d.to_string()).unwrap_or_else(|err| {
            panic!("{s:?} printed as {:?}, which fails: {err}", d.to_string())
        });
        assert_eq!(d, again, "{s:?} printed as {:?}", d.to_string());
    }
});
