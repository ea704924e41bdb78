//! A reader of server-sent events (the `text/event-stream` format): enough of it for the
//! change stream, which sends `event`, `id` and `data` fields and keep-alive comments.

/// One event: its type (`message` when unnamed) and its data lines joined by `\n`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Event {
    pub(crate) name: String,
    pub(crate) data: String,
}

/// Turns chunks of bytes, split anywhere, into events.
#[derive(Debug, Default)]
pub(crate) struct Parser {
    pending: Vec<u8>,
    name: Option<String>,
    data: Vec<String>,
}

impl Parser {
    /// Feeds a chunk; returns the events it completed.
    pub(crate) fn push(&mut self, chunk: &[u8]) -> Vec<Event> {
        self.pending.extend_from_slice(chunk);
        let mut events = Vec::new();
        while let Some(end) = self.pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line);
            let line = line.trim_end_matches(['\n', '\r']);
            if let Some(event) = self.line(line) {
                events.push(event);
            }
        }
        events
    }

    fn line(&mut self, line: &str) -> Option<Event> {
        if line.is_empty() {
            return self.dispatch();
        }
        if line.starts_with(':') {
            return None;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "event" => self.name = Some(value.to_owned()),
            "data" => self.data.push(value.to_owned()),
            // `id` and `retry` are not needed: a reconnecting client refetches the snapshot.
            _ => {}
        }
        None
    }

    fn dispatch(&mut self) -> Option<Event> {
        let name = self.name.take();
        if self.data.is_empty() {
            return None;
        }
        let data = std::mem::take(&mut self.data).join("\n");
        Some(Event { name: name.unwrap_or_else(|| "message".to_owned()), data })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_across_chunks_and_comments_are_read_whole() {
        let stream = b": keep-alive\n\nevent: change\nid: 7\ndata: {\"seq\":7}\n\ndata: a\ndata: b\r\n\r\n";
        for split in 0..stream.len() {
            let mut parser = Parser::default();
            let mut events = parser.push(&stream[..split]);
            events.extend(parser.push(&stream[split..]));
            assert_eq!(
                events,
                vec![
                    Event { name: "change".into(), data: "{\"seq\":7}".into() },
                    Event { name: "message".into(), data: "a\nb".into() },
                ],
                "split at {split}"
            );
        }
    }
}
