//! `overdued customers [CONNECTION] [--json]`: payer profiles and expected payment dates,
//! from the store, or through the running daemon that holds it.

use std::path::Path;

use crate::ops::Op;

pub fn run(config: Option<&Path>, connection: Option<&str>, json: bool) -> u8 {
    super::holds::run(
        config,
        Ok(Op::Customers {
            connection: connection.map(str::to_string),
            json,
        }),
    )
}
