//! The protobuf wire format: varints, keys and length-delimited fields.
//! Reads borrowed slices; never allocates and never trusts a length.

use crate::Problem;

/// One field's value as it sits on the wire.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Wire<'a> {
    Varint(u64),
    Fixed64(u64),
    /// No table type is 32-bit fixed-width; the value is skipped.
    Fixed32,
    Bytes(&'a [u8]),
}

impl Wire<'_> {
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Wire::Varint(_) => "varint",
            Wire::Fixed64(_) => "fixed64",
            Wire::Fixed32 => "fixed32",
            Wire::Bytes(_) => "length-delimited",
        }
    }
}

/// The largest field number protobuf allows.
const MAX_FIELD_NUMBER: u64 = (1 << 29) - 1;

/// A field read from the wire: its number and value.
pub(crate) type Next<'a> = Option<(u32, Wire<'a>)>;

/// A read failure, with the field number when the key was read.
pub(crate) type ReadError = (Option<u32>, Problem);

#[derive(Debug)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    /// The next field, or `None` at the end. On error, the field number if
    /// it was read.
    pub(crate) fn next_field(&mut self) -> Result<Next<'a>, ReadError> {
        if self.buf.is_empty() {
            return Ok(None);
        }
        let key = self.varint().map_err(|p| (None, p))?;
        let number = key >> 3;
        if number == 0 || number > MAX_FIELD_NUMBER {
            return Err((None, Problem::FieldNumber(number)));
        }
        // In range by the check above.
        let number = number as u32;
        let value = match key & 7 {
            0 => self.varint().map(Wire::Varint),
            1 => self
                .take(8)
                .map(|b| Wire::Fixed64(u64::from_le_bytes(fixed(b)))),
            2 => self.length_delimited().map(Wire::Bytes),
            5 => self.take(4).map(|_| Wire::Fixed32),
            t @ (3 | 4) => Err(Problem::Group(t as u8)),
            t => Err(Problem::WireType(t as u8)),
        };
        value
            .map(|v| Some((number, v)))
            .map_err(|p| (Some(number), p))
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub(crate) fn fixed64(&mut self) -> Result<u64, Problem> {
        self.take(8).map(|b| u64::from_le_bytes(fixed(b)))
    }

    pub(crate) fn varint(&mut self) -> Result<u64, Problem> {
        let mut value: u64 = 0;
        for (i, &byte) in self.buf.iter().enumerate().take(10) {
            let bits = u64::from(byte & 0x7f);
            // The tenth byte may carry only the top bit of 64.
            if i == 9 && bits > 1 {
                return Err(Problem::VarintOverflow);
            }
            value |= bits << (7 * i);
            if byte & 0x80 == 0 {
                self.buf = &self.buf[i + 1..];
                return Ok(value);
            }
        }
        if self.buf.len() >= 10 {
            Err(Problem::VarintOverflow)
        } else {
            Err(Problem::TruncatedVarint)
        }
    }

    fn length_delimited(&mut self) -> Result<&'a [u8], Problem> {
        let length = self.varint()?;
        let remaining = self.buf.len();
        match usize::try_from(length) {
            Ok(n) if n <= remaining => self.take(n),
            _ => Err(Problem::LengthPastEnd { length, remaining }),
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], Problem> {
        if n > self.buf.len() {
            return Err(Problem::Truncated);
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }
}

/// `take(N)` returned exactly `N` bytes, so the fallback is never used.
fn fixed<const N: usize>(bytes: &[u8]) -> [u8; N] {
    bytes.try_into().unwrap_or([0; N])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn varint(bytes: &[u8]) -> Result<u64, Problem> {
        Reader::new(bytes).varint()
    }

    #[test]
    fn varints() {
        assert_eq!(varint(&[0]).unwrap(), 0);
        assert_eq!(varint(&[0x96, 0x01]).unwrap(), 150);
        let max = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
        assert_eq!(varint(&max).unwrap(), u64::MAX);
        let over = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02];
        assert!(matches!(varint(&over), Err(Problem::VarintOverflow)));
        let long = [0x80; 11];
        assert!(matches!(varint(&long), Err(Problem::VarintOverflow)));
        assert!(matches!(
            varint(&[0x80, 0x80]),
            Err(Problem::TruncatedVarint)
        ));
        assert!(matches!(varint(&[]), Err(Problem::TruncatedVarint)));
    }

    #[test]
    fn fields() {
        // field 1 varint 150, field 2 "hi", field 3 fixed32, field 4 fixed64
        let bytes = [
            0x08, 0x96, 0x01, 0x12, 2, b'h', b'i', 0x1d, 1, 0, 0, 0, 0x21, 2, 0, 0, 0, 0, 0, 0, 0,
        ];
        let mut r = Reader::new(&bytes);
        assert!(matches!(r.next_field(), Ok(Some((1, Wire::Varint(150))))));
        assert!(matches!(r.next_field(), Ok(Some((2, Wire::Bytes(b"hi"))))));
        assert!(matches!(r.next_field(), Ok(Some((3, Wire::Fixed32)))));
        assert!(matches!(r.next_field(), Ok(Some((4, Wire::Fixed64(2))))));
        assert!(matches!(r.next_field(), Ok(None)));
    }

    #[test]
    fn bad_fields() {
        let err = |bytes: &[u8]| Reader::new(bytes).next_field().unwrap_err();
        assert!(matches!(err(&[0x00]), (None, Problem::FieldNumber(0))));
        assert!(matches!(err(&[0x0b]), (Some(1), Problem::Group(3))));
        assert!(matches!(err(&[0x0e]), (Some(1), Problem::WireType(6))));
        assert!(matches!(
            err(&[0x12, 5, 1]),
            (
                Some(2),
                Problem::LengthPastEnd {
                    length: 5,
                    remaining: 1
                }
            )
        ));
        let huge = [0x12, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f];
        assert!(matches!(
            err(&huge),
            (Some(2), Problem::LengthPastEnd { .. })
        ));
        assert!(matches!(err(&[0x19, 1, 2]), (Some(3), Problem::Truncated)));
        assert!(matches!(err(&[0x08]), (Some(1), Problem::TruncatedVarint)));
        // field number 2^29 is one past the largest
        assert!(matches!(
            err(&[0x80, 0x80, 0x80, 0x80, 0x10]),
            (None, Problem::FieldNumber(_))
        ));
    }
}
