//! Exit codes (sysexits.h), as the CLI uses them.

pub const OK: u8 = 0;
pub const UNAVAILABLE: u8 = 69;
pub const SOFTWARE: u8 = 70;
pub const IOERR: u8 = 74;
pub const CONFIG: u8 = 78;
