//! How many billed segments a text message takes. Twilio (like every carrier) sends a
//! message in the GSM-7 alphabet when every character is in it: 160 characters in one
//! segment, 153 per segment once it is split (the rest carries the joining header),
//! and the extension table's characters (`^{}\[~]|€` and form feed) take two. Any other
//! character makes the whole message UCS-2: 70 in one, 67 per segment when split.

/// The encoding a message goes out in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Gsm7,
    Ucs2,
}

/// A message's size as the carrier bills it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segments {
    pub encoding: Encoding,
    /// Septets (GSM-7) or UTF-16 code units (UCS-2).
    pub units: usize,
    pub count: usize,
}

const GSM7_BASIC: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\u{1b}ÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
const GSM7_EXTENSION: &str = "^{}\\[~]|€\u{0c}";

/// Counts the segments of `text`.
pub fn count(text: &str) -> Segments {
    let mut septets = 0usize;
    let mut gsm = true;
    for c in text.chars() {
        if GSM7_BASIC.contains(c) {
            septets += 1;
        } else if GSM7_EXTENSION.contains(c) {
            septets += 2;
        } else {
            gsm = false;
            break;
        }
    }
    if gsm {
        Segments {
            encoding: Encoding::Gsm7,
            units: septets,
            count: parts(septets, 160, 153),
        }
    } else {
        let units = text.encode_utf16().count();
        Segments {
            encoding: Encoding::Ucs2,
            units,
            count: parts(units, 70, 67),
        }
    }
}

fn parts(units: usize, single: usize, per_part: usize) -> usize {
    if units == 0 {
        0
    } else if units <= single {
        1
    } else {
        units.div_ceil(per_part)
    }
}

impl std::fmt::Display for Segments {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (enc, unit) = match self.encoding {
            Encoding::Gsm7 => ("GSM-7", "characters"),
            Encoding::Ucs2 => ("UCS-2, for a character outside GSM-7", "UTF-16 units"),
        };
        write!(
            f,
            "{} segment(s): {} {unit} in {enc}",
            self.count, self.units
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gsm7_boundaries() {
        assert_eq!(count("").count, 0);
        assert_eq!(count(&"a".repeat(160)).count, 1);
        assert_eq!(count(&"a".repeat(161)).count, 2);
        assert_eq!(count(&"a".repeat(306)).count, 2);
        assert_eq!(count(&"a".repeat(307)).count, 3);
        assert_eq!(count("£100.00 due").encoding, Encoding::Gsm7);
    }

    #[test]
    fn extension_characters_count_two() {
        let s = count(&format!("{}€", "a".repeat(158)));
        assert_eq!((s.encoding, s.units, s.count), (Encoding::Gsm7, 160, 1));
        let s = count(&format!("{}[", "a".repeat(159)));
        assert_eq!((s.units, s.count), (161, 2));
    }

    #[test]
    fn one_character_outside_gsm7_makes_it_ucs2() {
        let s = count(&format!("{}’", "a".repeat(69)));
        assert_eq!((s.encoding, s.units, s.count), (Encoding::Ucs2, 70, 1));
        assert_eq!(count(&format!("{}’", "a".repeat(70))).count, 2);
        assert_eq!(count(&"é’".repeat(67)).count, 2);
        assert_eq!(count(&"ł".repeat(135)).count, 3);
        // An emoji is two UTF-16 units.
        assert_eq!(count("😀").units, 2);
    }
}
