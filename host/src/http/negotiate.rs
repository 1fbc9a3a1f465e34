//! Content negotiation for the state views, as the old daemon did it:
//! `application/json` -> JSON, `text/html` -> HTML, `*/*`, `text/*` or
//! anything else -> indented JSON as text/plain. Among several acceptable
//! types the one with the highest quality wins, the first on a tie.

use axum::http::{HeaderMap, header};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Html,
    Text,
}

pub fn format(headers: &HeaderMap) -> Format {
    let accept = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>()
        .join(",");
    let mut best: Option<(f32, Format)> = None;
    for range in accept.split(',') {
        let mut parts = range.split(';').map(str::trim);
        let media = parts.next().unwrap_or_default().to_ascii_lowercase();
        let quality = parts
            .find_map(|p| p.strip_prefix("q="))
            .and_then(|q| q.parse::<f32>().ok())
            .unwrap_or(1.0);
        let format = match media.as_str() {
            "application/json" => Format::Json,
            "text/html" | "application/xhtml+xml" => Format::Html,
            "text/plain" | "text/*" | "*/*" => Format::Text,
            _ => continue,
        };
        if quality > 0.0 && best.is_none_or(|(q, _)| quality > q) {
            best = Some((quality, format));
        }
    }
    best.map_or(Format::Text, |(_, format)| format)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(accept: &str) -> Format {
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT, accept.parse().unwrap());
        format(&headers)
    }

    #[test]
    fn formats_follow_the_accept_header() {
        assert_eq!(format(&HeaderMap::new()), Format::Text);
        assert_eq!(with("*/*"), Format::Text);
        assert_eq!(with("text/*"), Format::Text);
        assert_eq!(with("application/json"), Format::Json);
        assert_eq!(with("text/html"), Format::Html);
        // What browsers send.
        assert_eq!(
            with("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
            Format::Html
        );
        assert_eq!(
            with("application/json;q=0.5, text/html;q=0.9"),
            Format::Html
        );
        assert_eq!(with("text/html;q=0, application/json"), Format::Json);
        assert_eq!(with("image/png"), Format::Text);
    }
}
