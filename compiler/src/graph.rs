//! `waldoc graph`: the message sequences of a checked protocol as a sequence diagram, in
//! Mermaid (text) or SVG.
//!
//! For each sequence: its first block runs on the starter; each later block is a message to
//! the other endpoint, labelled with the block it runs; when the last block runs on the
//! partner, a dashed message carries the named results back to the starter. Symmetric
//! sequences are drawn started on the first endpoint.

use std::fmt::Write;

use crate::ir::{EndpointId, Protocol, Sequence};

/// One step of a sequence as drawn: an arrow (or a note when `from == to`).
struct Step {
    from: EndpointId,
    to: EndpointId,
    label: String,
    dashed: bool,
}

fn steps(protocol: &Protocol, seq: &Sequence) -> Vec<Step> {
    let mut out = Vec::new();
    let Some(first) = seq.blocks.first() else { return out };
    out.push(Step { from: first.endpoint, to: first.endpoint, label: first.name.clone(), dashed: false });
    for pair in seq.blocks.windows(2) {
        out.push(Step {
            from: pair[0].endpoint,
            to: pair[1].endpoint,
            label: pair[1].name.clone(),
            dashed: false,
        });
    }
    let last = seq.blocks.last().map_or(first.endpoint, |b| b.endpoint);
    if last != first.endpoint {
        let results: Vec<&str> =
            seq.data[seq.params..seq.params + seq.returns].iter().map(|v| v.name.as_str()).collect();
        let label =
            if results.is_empty() { "done".to_owned() } else { format!("returns {}", results.join(", ")) };
        out.push(Step { from: last, to: first.endpoint, label, dashed: true });
    }
    let _ = protocol;
    out
}

fn signature(seq: &Sequence) -> String {
    let params: Vec<&str> = seq.data[..seq.params].iter().map(|v| v.name.as_str()).collect();
    format!("{}({})", seq.name, params.join(", "))
}

/// The diagram in Mermaid's `sequenceDiagram` syntax.
pub fn mermaid(protocol: &Protocol) -> String {
    let mut out = String::from("sequenceDiagram\n");
    for e in &protocol.endpoints {
        let _ = writeln!(out, "    participant {}", e.name);
    }
    let names: Vec<&str> = protocol.endpoints.iter().map(|e| e.name.as_str()).collect();
    let span = names.join(",");
    if protocol.sequences.is_empty() {
        let _ = writeln!(out, "    Note over {span}: no sequences");
    }
    for seq in &protocol.sequences {
        let _ = writeln!(out, "    Note over {span}: {}", signature(seq));
        for step in steps(protocol, seq) {
            if step.from == step.to {
                let _ = writeln!(out, "    Note over {}: {}", names[step.from.index()], step.label);
            } else {
                let arrow = if step.dashed { "-->>" } else { "->>" };
                let _ = writeln!(
                    out,
                    "    {}{arrow}{}: {}",
                    names[step.from.index()],
                    names[step.to.index()],
                    step.label
                );
            }
        }
    }
    out
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// The diagram as a standalone SVG picture.
pub fn svg(protocol: &Protocol) -> String {
    const COLUMN: usize = 220;
    const ROW: usize = 34;
    const TOP: usize = 60;
    let columns = protocol.endpoints.len().max(1);
    let x = |i: usize| 40 + COLUMN / 2 + i * COLUMN;
    let mut body = String::new();
    let mut y = TOP;
    for seq in &protocol.sequences {
        y += ROW;
        let _ = writeln!(
            body,
            r#"<text x="{}" y="{y}" font-weight="bold" text-anchor="middle">{}</text>"#,
            40 + COLUMN * columns / 2,
            escape(&signature(seq))
        );
        for step in steps(protocol, seq) {
            y += ROW;
            if step.from == step.to {
                let cx = x(step.from.index());
                let _ = writeln!(
                    body,
                    r##"<rect x="{}" y="{}" width="140" height="24" rx="4" fill="#fff8d0" stroke="#b0a050"/><text x="{cx}" y="{}" text-anchor="middle">{}</text>"##,
                    cx - 70,
                    y - 17,
                    y,
                    escape(&step.label)
                );
            } else {
                let (x1, x2) = (x(step.from.index()), x(step.to.index()));
                let dash = if step.dashed { r#" stroke-dasharray="6 4""# } else { "" };
                let _ = writeln!(
                    body,
                    r##"<line x1="{x1}" y1="{y}" x2="{x2}" y2="{y}" stroke="#333"{dash} marker-end="url(#arrow)"/><text x="{}" y="{}" text-anchor="middle">{}</text>"##,
                    (x1 + x2) / 2,
                    y - 6,
                    escape(&step.label)
                );
            }
        }
    }
    let height = y + ROW;
    let width = 80 + COLUMN * columns;
    let mut out = format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="13">
<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" markerHeight="8" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#333"/></marker></defs>
<text x="{}" y="24" font-size="16" font-weight="bold" text-anchor="middle">{}</text>
"##,
        width / 2,
        escape(&protocol.name)
    );
    for (i, e) in protocol.endpoints.iter().enumerate() {
        let cx = x(i);
        let _ = writeln!(
            out,
            r##"<rect x="{}" y="34" width="140" height="26" rx="4" fill="#e8eef8" stroke="#335"/><text x="{cx}" y="52" text-anchor="middle">{}</text><line x1="{cx}" y1="60" x2="{cx}" y2="{}" stroke="#999"/>"##,
            cx - 70,
            escape(&e.name),
            height - 10
        );
    }
    out.push_str(&body);
    out.push_str("</svg>\n");
    out
}
