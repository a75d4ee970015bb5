//! G.711 μ-law and A-law (ITU-T G.711) to 16-bit linear PCM, and the μ-law encoder the demo's
//! synthetic voice needs.

/// Decodes one μ-law byte to a 16-bit sample.
pub fn mulaw_to_linear(byte: u8) -> i16 {
    let u = !byte;
    let exponent = (u >> 4) & 0x07;
    let mantissa = i32::from(u & 0x0f);
    let magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84;
    if u & 0x80 != 0 {
        -magnitude as i16
    } else {
        magnitude as i16
    }
}

/// Decodes one A-law byte to a 16-bit sample.
pub fn alaw_to_linear(byte: u8) -> i16 {
    let a = byte ^ 0x55;
    let exponent = (a >> 4) & 0x07;
    let mantissa = i32::from(a & 0x0f);
    let magnitude = match exponent {
        0 => (mantissa << 4) + 8,
        e => ((mantissa << 4) + 0x108) << (e - 1),
    };
    if a & 0x80 != 0 {
        magnitude as i16
    } else {
        -magnitude as i16
    }
}

/// Encodes one 16-bit sample as μ-law.
pub fn linear_to_mulaw(sample: i16) -> u8 {
    const BIAS: i32 = 0x84;
    const CLIP: i32 = 32635;
    let mut s = i32::from(sample);
    let sign = if s < 0 {
        s = -s;
        0x80
    } else {
        0
    };
    let s = s.min(CLIP) + BIAS;
    // Position of the highest set bit above bit 7 gives the segment.
    let exponent = (31 - (s as u32).leading_zeros()).saturating_sub(7).min(7) as i32;
    let mantissa = (s >> (exponent + 3)) & 0x0f;
    !(sign | (exponent << 4) as u8 | mantissa as u8)
}

/// 256-entry lookup tables, built once, so decoding a frame is one load per byte.
pub struct Tables {
    mulaw: [i16; 256],
    alaw: [i16; 256],
}

impl Tables {
    /// Builds both tables.
    pub const fn new() -> Tables {
        let mut mulaw = [0i16; 256];
        let mut alaw = [0i16; 256];
        let mut i = 0;
        while i < 256 {
            mulaw[i] = mulaw_const(i as u8);
            alaw[i] = alaw_const(i as u8);
            i += 1;
        }
        Tables { mulaw, alaw }
    }

    /// μ-law byte → sample.
    pub fn mulaw(&self, b: u8) -> i16 {
        self.mulaw[b as usize]
    }

    /// A-law byte → sample.
    pub fn alaw(&self, b: u8) -> i16 {
        self.alaw[b as usize]
    }
}

impl Default for Tables {
    fn default() -> Self {
        Tables::new()
    }
}

/// The tables, computed at compile time.
pub static TABLES: Tables = Tables::new();

const fn mulaw_const(byte: u8) -> i16 {
    let u = !byte;
    let exponent = (u >> 4) & 0x07;
    let mantissa = (u & 0x0f) as i32;
    let magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84;
    if u & 0x80 != 0 {
        -magnitude as i16
    } else {
        magnitude as i16
    }
}

const fn alaw_const(byte: u8) -> i16 {
    let a = byte ^ 0x55;
    let exponent = (a >> 4) & 0x07;
    let mantissa = (a & 0x0f) as i32;
    let magnitude = if exponent == 0 {
        (mantissa << 4) + 8
    } else {
        ((mantissa << 4) + 0x108) << (exponent - 1)
    };
    if a & 0x80 != 0 {
        magnitude as i16
    } else {
        -magnitude as i16
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_match_the_functions() {
        for b in 0..=255u8 {
            assert_eq!(TABLES.mulaw(b), mulaw_to_linear(b));
            assert_eq!(TABLES.alaw(b), alaw_to_linear(b));
        }
    }

    #[test]
    fn mulaw_round_trips_every_code() {
        for b in 0..=255u8 {
            let s = mulaw_to_linear(b);
            let back = linear_to_mulaw(s);
            // 0x7f and 0xff both mean zero.
            assert_eq!(mulaw_to_linear(back), s, "byte {b:#04x}");
        }
    }

    #[test]
    fn known_values() {
        assert_eq!(mulaw_to_linear(0xff), 0);
        assert_eq!(mulaw_to_linear(0x00), -32124);
        assert_eq!(mulaw_to_linear(0x80), 32124);
        assert_eq!(alaw_to_linear(0xd5), 8);
        assert_eq!(alaw_to_linear(0x2a), -32256);
        assert_eq!(alaw_to_linear(0xaa), 32256);
    }
}
