//! Checks across nodes: cycles between images (`from`, `copy from=`) and between services
//! (`depends-on`). Names and references were already checked while lowering.

use std::collections::BTreeMap;

use miette::LabeledSpan;

use super::error::ManifestError;
use super::model::*;

/// An edge `from → to`, made by the token at `span`.
struct Edge<'a> {
    to: &'a str,
    span: Span,
}

pub(super) fn cycles(m: &Manifest, errors: &mut Vec<ManifestError>) {
    let mut images: BTreeMap<&str, Vec<Edge>> = BTreeMap::new();
    for img in &m.images {
        let edges = images.entry(img.name.value.as_str()).or_default();
        if let Base::Image(parent) = &img.from.value {
            edges.push(Edge {
                to: parent,
                span: img.from.span,
            });
        }
        for ins in &img.instructions {
            if let Instruction::Copy(Copy {
                from: Some(src), ..
            }) = &ins.value
                && let ImageSource::Image(other) = &src.value
            {
                edges.push(Edge {
                    to: other,
                    span: src.span,
                });
            }
        }
    }
    report(
        &images,
        "image",
        "an image cannot be built from itself, directly or through others",
        errors,
    );

    let mut services: BTreeMap<&str, Vec<Edge>> = BTreeMap::new();
    for svc in &m.services {
        let edges = services.entry(svc.name.value.as_str()).or_default();
        for d in &svc.depends_on {
            edges.push(Edge {
                to: &d.service.value,
                span: d.service.span,
            });
        }
    }
    report(
        &services,
        "depends-on",
        "services must start in some order: remove one of these dependencies",
        errors,
    );
}

/// A host port that two services publish (or one service with several replicas), on the same
/// protocol and an overlapping address: only one of them could start.
pub(super) fn ports(m: &Manifest, errors: &mut Vec<ManifestError>) {
    let mut seen: Vec<(&Publish, &str, Span)> = Vec::new();
    for svc in &m.services {
        let replicas = svc.replicas.as_ref().map_or(1, |r| r.value);
        for p in &svc.publish {
            // A publication that takes any free port (or the first free one of a range) can
            // share its ports with another.
            let Some((lo, hi)) = p.fixed_host_ports() else {
                continue;
            };
            let port = if lo == hi {
                lo.to_string()
            } else {
                format!("{lo}-{hi}")
            };
            let overlaps = |q: &Publish| {
                q.fixed_host_ports()
                    .is_some_and(|(a, b)| a <= hi && lo <= b)
                    && q.proto == p.proto
                    && match (q.host_ip, p.host_ip) {
                        (Some(a), Some(b)) => a == b || a.is_unspecified() || b.is_unspecified(),
                        _ => true,
                    }
            };
            if let Some((_, other, first)) = seen.iter().find(|(q, _, _)| overlaps(q)) {
                errors.push(ManifestError::PortTaken {
                    port: format!("{port}/{}", p.proto),
                    span: p.span,
                    again: format!("`{}` publishes it too", svc.name.value),
                    first: *first,
                    first_label: "first published here".into(),
                    help: format!(
                        "`{other}` holds it: give one of them another host port, or leave the host port out (`publish \"{}\"`) to get a free one",
                        container_text(p)
                    ),
                });
            } else if replicas > 1 {
                errors.push(ManifestError::PortTaken {
                    port: format!("{port}/{}", p.proto),
                    span: p.span,
                    again: format!("each of the {replicas} replicas would publish it"),
                    first: svc.replicas.as_ref().map_or(p.span, |r| r.span),
                    first_label: "more than one replica".into(),
                    help: format!(
                        "leave the host port out (`publish \"{}\"`): each replica then gets a free one",
                        container_text(p)
                    ),
                });
            } else {
                seen.push((&p.value, &svc.name.value, p.span));
            }
        }
    }
}

/// The container side of a publication, as `publish` takes it alone: `80`, `8000-8002`.
fn container_text(p: &Publish) -> String {
    match p.container_ports {
        (lo, hi) if lo == hi => lo.to_string(),
        (lo, hi) => format!("{lo}-{hi}"),
    }
}

/// Finds every strongly connected component with a cycle (Tarjan) and reports each once, with a
/// label on every edge of one cycle through all of its members.
fn report(
    graph: &BTreeMap<&str, Vec<Edge>>,
    kind: &str,
    help: &str,
    errors: &mut Vec<ManifestError>,
) {
    for scc in sccs(graph) {
        let first = scc[0];
        let self_loop = graph[first].iter().any(|e| e.to == first);
        if scc.len() == 1 && !self_loop {
            continue;
        }
        // Walk a cycle: from the first member, follow edges inside the component, preferring
        // members not yet visited, until we come back.
        let mut path = vec![first];
        let mut labels = Vec::new();
        let mut current = first;
        loop {
            let edges = &graph[current];
            let next = edges
                .iter()
                .filter(|e| scc.contains(&e.to))
                .find(|e| !path.contains(&e.to))
                .or_else(|| edges.iter().find(|e| e.to == first))
                .or_else(|| edges.iter().find(|e| scc.contains(&e.to)))
                .expect("a member of a cycle has an edge inside it");
            labels.push(LabeledSpan::new_with_span(
                Some(format!("`{current}` needs `{}`", next.to)),
                next.span,
            ));
            if next.to == first || path.len() > scc.len() {
                path.push(next.to);
                break;
            }
            path.push(next.to);
            current = next.to;
        }
        errors.push(ManifestError::Cycle {
            kind: kind.into(),
            path: path
                .iter()
                .map(|n| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(" → "),
            members: labels,
            help: help.into(),
        });
    }
}

fn sccs<'a>(graph: &BTreeMap<&'a str, Vec<Edge<'a>>>) -> Vec<Vec<&'a str>> {
    struct State<'a> {
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeMap<&'a str, bool>,
        out: Vec<Vec<&'a str>>,
    }
    fn visit<'a>(v: &'a str, g: &BTreeMap<&'a str, Vec<Edge<'a>>>, s: &mut State<'a>) {
        let i = s.index.len();
        s.index.insert(v, i);
        s.low.insert(v, i);
        s.stack.push(v);
        s.on_stack.insert(v, true);
        for e in g.get(v).into_iter().flatten() {
            if !g.contains_key(e.to) {
                continue;
            }
            if !s.index.contains_key(e.to) {
                visit(e.to, g, s);
                let l = s.low[v].min(s.low[e.to]);
                s.low.insert(v, l);
            } else if s.on_stack.get(e.to).copied().unwrap_or(false) {
                let l = s.low[v].min(s.index[e.to]);
                s.low.insert(v, l);
            }
        }
        if s.low[v] == s.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.insert(w, false);
                comp.push(w);
                if w == v {
                    break;
                }
            }
            comp.reverse();
            s.out.push(comp);
        }
    }
    let mut s = State {
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeMap::new(),
        out: Vec::new(),
    };
    for v in graph.keys() {
        if !s.index.contains_key(v) {
            visit(v, graph, &mut s);
        }
    }
    s.out
}
