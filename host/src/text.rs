//! Text from outside (a plugin's messages, errors, details and names; a
//! spec's values) is bounded before the daemon logs, shows or quotes it.

/// At most `max` bytes of `text` (on a character boundary), marked when cut:
/// anything a plugin supplies is clipped before it is logged or shown.
pub fn clip(text: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if text.len() <= max {
        return text.into();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes in all)", &text[..end], text.len()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_text_is_cut_on_a_character_boundary_and_marked() {
        assert_eq!(clip("short", 10), "short");
        let cut = clip("ééééé", 3);
        assert_eq!(cut, "é… (10 bytes in all)");
    }
}
