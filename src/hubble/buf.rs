//! The output buffers the formatter writes into: a reusable `String` (TUI) or `Vec<u8>` (stdout).

/// A text sink. Implemented for `String` and `Vec<u8>`; everything written is UTF-8.
pub trait TextBuf {
    /// Appends a string.
    fn push_str(&mut self, s: &str);
    /// Appends one ASCII byte (callers only pass ASCII).
    fn push_byte(&mut self, b: u8);
    /// Appends ASCII bytes (digits and punctuation only).
    fn push_ascii(&mut self, bytes: &[u8]);
    /// Current length in bytes.
    fn len_bytes(&self) -> usize;
}

impl TextBuf for String {
    fn push_str(&mut self, s: &str) {
        String::push_str(self, s);
    }
    fn push_byte(&mut self, b: u8) {
        debug_assert!(b.is_ascii());
        self.push(char::from(b));
    }
    fn push_ascii(&mut self, bytes: &[u8]) {
        for &b in bytes {
            debug_assert!(b.is_ascii());
            self.push(char::from(b));
        }
    }
    fn len_bytes(&self) -> usize {
        self.len()
    }
}

impl TextBuf for Vec<u8> {
    fn push_str(&mut self, s: &str) {
        self.extend_from_slice(s.as_bytes());
    }
    fn push_byte(&mut self, b: u8) {
        self.push(b);
    }
    fn push_ascii(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
    fn len_bytes(&self) -> usize {
        self.len()
    }
}
