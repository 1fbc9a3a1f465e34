//! How a line is written: text or JSON lines, never longer than
//! [`MAX_LINE`], always one line (control characters escaped).

use std::io::Write;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::registry::LookupSpan;

/// Longest line written; longer ones are cut and marked.
pub const MAX_LINE: usize = 8 << 10;
/// Keys every JSON line has beside `message` (the event's own); an event
/// field of the same name is written as `field.NAME`.
const JSON_KEYS: [&str; 2] = ["time", "level"];
/// The field of CloudWatch's embedded metric format.
const EMF_KEY: &str = "_aws";

/// One JSON object per line: `time` (RFC 3339, UTC), `level` (lowercase),
/// `message`, then the event's own fields under their names (`plugin`,
/// `table`, `cidr`, `host`, `reason`, `took_ms`, ...): integers and
/// booleans as JSON values, everything else as strings. A line stays valid
/// JSON within [`MAX_LINE`]: the longest strings are cut first.
pub(super) struct JsonLines;

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let mut time = String::new();
        SystemTime.format_time(&mut Writer::new(&mut time))?;
        let level = event.metadata().level().as_str().to_ascii_lowercase();
        let mut fields = JsonFields::default();
        event.record(&mut fields);
        writeln!(writer, "{}", json_line(time, level, fields.0))
    }
}

/// The line for one event, cut to fit [`MAX_LINE`] with its newline.
fn json_line(
    time: String,
    level: String,
    mut fields: serde_json::Map<String, serde_json::Value>,
) -> String {
    use serde_json::Value;
    let message = fields
        .remove("message")
        .unwrap_or_else(|| Value::String(String::new()));
    let mut entries = vec![
        ("time".to_string(), Value::String(time)),
        ("level".to_string(), Value::String(level)),
        ("message".to_string(), message),
    ];
    for (name, value) in fields {
        // CloudWatch's embedded metric format: the daemon's own `_aws`
        // block is an object of the line (plugins log messages only).
        let value = match (name.as_str(), value) {
            (EMF_KEY, Value::String(block)) => serde_json::from_str::<Value>(&block)
                .ok()
                .filter(Value::is_object)
                .unwrap_or(Value::String(block)),
            (_, value) => value,
        };
        let key = if JSON_KEYS.contains(&name.as_str()) {
            format!("field.{name}")
        } else {
            name
        };
        entries.push((key, value));
    }
    loop {
        let line = render(&entries);
        let excess = line.len().saturating_sub(MAX_LINE - 1);
        let longest = entries
            .iter_mut()
            .filter_map(|(_, v)| match v {
                Value::String(s) => Some(s),
                _ => None,
            })
            .max_by_key(|s| s.len());
        match longest {
            // Short strings cannot be cut further (the writer cuts the line).
            Some(longest) if excess > 0 && longest.len() > 256 => {
                let keep = longest
                    .len()
                    .checked_sub(excess + 64)
                    .filter(|&keep| keep > 0)
                    .unwrap_or(longest.len() / 2);
                *longest = crate::text::clip(longest, keep).into_owned();
            }
            _ => return line,
        }
    }
}

/// `{"key":value,...}` in the order given.
fn render(entries: &[(String, serde_json::Value)]) -> String {
    let mut line = String::from("{");
    for (i, (key, value)) in entries.iter().enumerate() {
        if i > 0 {
            line.push(',');
        }
        line.push_str(&serde_json::to_string(key).expect("a string serialises"));
        line.push(':');
        line.push_str(&value.to_string());
    }
    line.push('}');
    line
}

/// An event's fields as JSON values.
#[derive(Default)]
struct JsonFields(serde_json::Map<String, serde_json::Value>);

impl JsonFields {
    fn put(&mut self, field: &Field, value: serde_json::Value) {
        self.0.insert(field.name().to_string(), value);
    }
}

impl Visit for JsonFields {
    fn record_str(&mut self, field: &Field, value: &str) {
        let value = crate::text::clip(value, MAX_LINE);
        self.put(field, value.into_owned().into());
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, value.into());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, value.into());
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, value.into());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, value.into());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let text = format!("{value:?}");
        let value = crate::text::clip(&text, MAX_LINE);
        self.put(field, value.into_owned().into());
    }
}

/// A writer that keeps every event on one line of at most [`MAX_LINE`]
/// bytes (the formatter writes one event, newline included, in one
/// `write_all`): line breaks and other control characters inside it are
/// escaped (`\n`, `\r`, `\x1b`, `\u2028`), so no text a line quotes can
/// start a line of its own; then it is cut. The escape character stays
/// when the daemon colours its own output for a terminal.
pub(super) struct OneLine<W> {
    inner: W,
    colour: bool,
}

impl<W> OneLine<W> {
    pub(super) fn new(inner: W, colour: bool) -> Self {
        Self { inner, colour }
    }
}

impl<'a, W: MakeWriter<'a>> MakeWriter<'a> for OneLine<W> {
    type Writer = OneLineWriter<W::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        OneLineWriter {
            inner: self.inner.make_writer(),
            colour: self.colour,
        }
    }
}

pub(super) struct OneLineWriter<W> {
    inner: W,
    colour: bool,
}

impl<W: Write> Write for OneLineWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let body = buf.strip_suffix(b"\n").unwrap_or(buf);
        let mut line = escape_controls(body, self.colour);
        if line.len() > MAX_LINE {
            let all = line.len();
            line.truncate(MAX_LINE);
            line.extend_from_slice(format!("… (line of {all} bytes cut)").as_bytes());
        }
        line.push(b'\n');
        self.inner.write_all(&line)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// `text` with every control character (but tab, and the escape character
/// when `keep_escape`) and the Unicode line and paragraph separators
/// written as escapes.
fn escape_controls(text: &[u8], keep_escape: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut rest = text;
    while let Some((&byte, tail)) = rest.split_first() {
        match (byte, tail) {
            (b'\n', _) => out.extend_from_slice(b"\\n"),
            (b'\r', _) => out.extend_from_slice(b"\\r"),
            (0x1b, _) if keep_escape => out.push(byte),
            (b'\t', _) => out.push(byte),
            (0..=0x1f | 0x7f, _) => out.extend_from_slice(format!("\\x{byte:02x}").as_bytes()),
            // NEL (U+0085), LINE and PARAGRAPH SEPARATOR (U+2028, U+2029).
            (0xc2, [0x85, ..]) => {
                out.extend_from_slice(b"\\u0085");
                rest = &tail[1..];
                continue;
            }
            (0xe2, [0x80, last @ (0xa8 | 0xa9), ..]) => {
                let escaped = if *last == 0xa8 { "\\u2028" } else { "\\u2029" };
                out.extend_from_slice(escaped.as_bytes());
                rest = &tail[2..];
                continue;
            }
            _ => out.push(byte),
        }
        rest = tail;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    fn one_line(text: &str, colour: bool) -> String {
        let mut out = Vec::new();
        OneLineWriter {
            inner: &mut out,
            colour,
        }
        .write_all(text.as_bytes())
        .unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn long_lines_are_cut() {
        let out = one_line(&"x".repeat(MAX_LINE * 3), false);
        assert!(out.len() < MAX_LINE + 64);
        assert!(out.ends_with("cut)\n"));
    }

    /// No text a line quotes can start a line of its own or move the
    /// cursor: a plugin's "\nroute replaced ..." stays inside its line.
    #[test]
    fn control_characters_inside_a_line_are_escaped() {
        let forged = "plugin said: ok\n2026-12-02T00:00:00Z INFO route replaced\r\x1b[2K\u{2028}x\u{85}\ttab é\n";
        let out = one_line(forged, false);
        assert_eq!(out.lines().count(), 1, "{out:?}");
        assert_eq!(
            out,
            "plugin said: ok\\n2026-12-02T00:00:00Z INFO route replaced\\r\\x1b[2K\\u2028x\\u0085\ttab é\n"
        );
        // The daemon's own colours survive on a terminal.
        assert_eq!(
            one_line("\x1b[32mINFO\x1b[0m a\n", true),
            "\x1b[32mINFO\x1b[0m a\n"
        );
    }

    /// Formats events as `--log-format json` does, into a buffer.
    fn json_lines_of(emit: impl FnOnce()) -> Vec<serde_json::Value> {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let sink = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .event_format(JsonLines)
            .with_writer(move || SharedBuffer(sink.clone()))
            .finish();
        tracing::subscriber::with_default(subscriber, emit);
        let text = String::from_utf8(buffer.lock().unwrap().clone()).unwrap();
        text.lines()
            .map(|line| serde_json::from_str(line).expect("each line is JSON"))
            .collect()
    }

    struct SharedBuffer(Arc<Mutex<Vec<u8>>>);

    impl Write for SharedBuffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn json_lines_have_stable_names_and_typed_values() {
        let cidr: ipnet::IpNet = "10.55.0.0/16".parse().unwrap();
        let lines = json_lines_of(|| {
            tracing::info!(
                table = "rtb-a",
                %cidr,
                host = "10.0.0.1",
                reason = "host failed",
                took_ms = 7u64,
                "route replaced"
            );
            tracing::warn!(plugin = "tcp", level = 3, "plugin said \"hi\"\n");
        });
        assert_eq!(lines.len(), 2);
        let route = &lines[0];
        assert_eq!(route["level"], "info");
        assert_eq!(route["message"], "route replaced");
        assert_eq!(route["table"], "rtb-a");
        assert_eq!(route["cidr"], "10.55.0.0/16");
        assert_eq!(route["host"], "10.0.0.1");
        assert_eq!(route["reason"], "host failed");
        assert_eq!(route["took_ms"], 7);
        let time = route["time"].as_str().unwrap();
        assert!(time.starts_with("20") && time.ends_with('Z'), "{time}");
        let plugin = &lines[1];
        assert_eq!(plugin["level"], "warn");
        assert_eq!(plugin["plugin"], "tcp");
        assert_eq!(plugin["message"], "plugin said \"hi\"\n");
        // A field cannot take the place of a key every line has.
        assert_eq!(plugin["field.level"], 3);
    }

    /// The daemon's EMF line: `_aws` is an object, the figures numbers at
    /// the top, as CloudWatch reads them.
    #[test]
    fn an_emf_block_is_an_object_of_the_line() {
        let figures = crate::cloudwatch::Figures {
            failovers: 3,
            routes_on_fallback: 1,
            eligible_routers_min: Some(2),
            cidrs_without_router: 0,
            probe_rtt_ms: None,
        };
        let block = crate::cloudwatch::emf::metadata(&figures, std::time::SystemTime::now());
        let block = block.to_string();
        let lines = json_lines_of(|| {
            tracing::info!(
                _aws = block.as_str(),
                VpcId = "vpc-1",
                Failovers = 3u64,
                "metrics"
            );
            // Anything else under that name that is not an object stays text.
            tracing::info!(_aws = "not json", "other");
        });
        let emf = &lines[0];
        assert_eq!(
            emf["_aws"]["CloudWatchMetrics"][0]["Namespace"],
            "vpcrouter"
        );
        assert_eq!(emf["Failovers"], 3);
        assert_eq!(emf["VpcId"], "vpc-1");
        assert_eq!(lines[1]["_aws"], "not json");
    }

    #[test]
    fn json_lines_stay_json_within_the_line_limit() {
        let huge = "é\"".repeat(MAX_LINE);
        let lines = json_lines_of(|| {
            tracing::error!(cause = %huge, other = %huge, "{huge}");
        });
        let line = lines[0].to_string();
        assert!(line.len() < MAX_LINE, "{}", line.len());
        assert!(
            lines[0]["message"]
                .as_str()
                .unwrap()
                .contains("bytes in all")
        );
        assert!(lines[0]["cause"].as_str().unwrap().starts_with("é\""));
    }
}
