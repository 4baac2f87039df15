//! `build_graph`: nodes and edges (JSON, or an edge list in CSV) → `graph.html`, a
//! self-contained interactive drawing laid out in Rust (Fruchterman–Reingold), and
//! `graph.json` with counts, degrees, connected components and PageRank.

use crate::html::{escape, script_json};
use crate::{Deadline, Output, ToolError};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashMap;

pub const MAX_NODES: usize = 5_000;
pub const MAX_EDGES: usize = 20_000;
pub const MAX_CSV_BYTES: usize = 1_000_000;
const MAX_ID_LEN: usize = 200;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    directed: bool,
    #[serde(default)]
    nodes: Vec<NodeIn>,
    #[serde(default)]
    edges: Option<Vec<EdgeIn>>,
    #[serde(default)]
    edges_csv: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NodeIn {
    id: String,
    #[serde(default)]
    label: Option<String>,
    #[serde(default)]
    group: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EdgeIn {
    source: String,
    target: String,
    #[serde(default)]
    weight: Option<f64>,
}

/// The graph, with nodes indexed 0..n.
#[derive(Debug, Default)]
pub struct Graph {
    pub ids: Vec<String>,
    pub labels: Vec<String>,
    pub groups: Vec<Option<String>>,
    /// (source, target, weight)
    pub edges: Vec<(usize, usize, f64)>,
    pub directed: bool,
    index: HashMap<String, usize>,
}

impl Graph {
    fn add_node(
        &mut self,
        id: &str,
        label: Option<&str>,
        group: Option<&str>,
    ) -> Result<usize, ToolError> {
        check_id(id)?;
        if let Some(&i) = self.index.get(id) {
            return Ok(i);
        }
        if self.ids.len() >= MAX_NODES {
            return Err(ToolError::TooLarge(format!("more than {MAX_NODES} nodes")));
        }
        let i = self.ids.len();
        self.ids.push(id.to_string());
        self.labels.push(label.unwrap_or(id).to_string());
        self.groups.push(group.map(str::to_string));
        self.index.insert(id.to_string(), i);
        Ok(i)
    }

    fn add_edge(
        &mut self,
        source: &str,
        target: &str,
        weight: Option<f64>,
    ) -> Result<(), ToolError> {
        if self.edges.len() >= MAX_EDGES {
            return Err(ToolError::TooLarge(format!("more than {MAX_EDGES} edges")));
        }
        let w = weight.unwrap_or(1.0);
        if !(w.is_finite() && w > 0.0) {
            return Err(ToolError::InvalidInput(format!(
                "edge {source} -> {target}: weight must be a positive number"
            )));
        }
        let s = self.add_node(source, None, None)?;
        let t = self.add_node(target, None, None)?;
        self.edges.push((s, t, w));
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

fn check_id(id: &str) -> Result<(), ToolError> {
    if id.trim().is_empty() || id.len() > MAX_ID_LEN {
        return Err(ToolError::InvalidInput(format!(
            "node ids must be 1-{MAX_ID_LEN} characters and not blank"
        )));
    }
    Ok(())
}

/// Parses the parameters into a graph.
pub fn parse(params: &Value) -> Result<(Graph, String), ToolError> {
    let p: Params = serde_json::from_value(params.clone())
        .map_err(|e| ToolError::InvalidInput(e.to_string()))?;
    let mut g = Graph {
        directed: p.directed,
        ..Graph::default()
    };
    for n in &p.nodes {
        check_id(&n.id)?;
        if g.index.contains_key(&n.id) {
            return Err(ToolError::InvalidInput(format!(
                "node {:?} is listed twice",
                n.id
            )));
        }
        g.add_node(&n.id, n.label.as_deref(), n.group.as_deref())?;
    }
    match (p.edges, p.edges_csv) {
        (Some(edges), None) => {
            for e in edges {
                g.add_edge(&e.source, &e.target, e.weight)?;
            }
        }
        (None, Some(csv_text)) => parse_csv_edges(&mut g, &csv_text)?,
        _ => {
            return Err(ToolError::InvalidInput(
                "give exactly one of edges and edges_csv".into(),
            ))
        }
    }
    if g.is_empty() {
        return Err(ToolError::InvalidInput("the graph has no nodes".into()));
    }
    let title = p.title.unwrap_or_else(|| "Graph".into());
    Ok((g, title))
}

/// `source,target[,weight]` with a header row.
fn parse_csv_edges(g: &mut Graph, text: &str) -> Result<(), ToolError> {
    if text.len() > MAX_CSV_BYTES {
        return Err(ToolError::TooLarge(format!(
            "edges_csv is over {MAX_CSV_BYTES} bytes"
        )));
    }
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .flexible(false)
        .from_reader(text.as_bytes());
    let headers = reader
        .headers()
        .map_err(|e| ToolError::InvalidInput(format!("edges_csv: {e}")))?
        .clone();
    let col = |name: &str| headers.iter().position(|h| h.eq_ignore_ascii_case(name));
    let (Some(s), Some(t)) = (col("source"), col("target")) else {
        return Err(ToolError::InvalidInput(
            "edges_csv needs a header row with source and target columns".into(),
        ));
    };
    let w = col("weight");
    for (i, record) in reader.records().enumerate() {
        let record = record.map_err(|e| ToolError::InvalidInput(format!("edges_csv: {e}")))?;
        let weight = match w.and_then(|w| record.get(w)).filter(|v| !v.is_empty()) {
            None => None,
            Some(v) => Some(v.parse::<f64>().map_err(|_| {
                ToolError::InvalidInput(format!(
                    "edges_csv row {}: weight {v:?} is not a number",
                    i + 2
                ))
            })?),
        };
        g.add_edge(
            record.get(s).unwrap_or(""),
            record.get(t).unwrap_or(""),
            weight,
        )?;
    }
    Ok(())
}

/// Weakly connected components: a component index per node, and the sizes.
pub fn components(g: &Graph) -> (Vec<usize>, Vec<usize>) {
    let n = g.len();
    let mut parent: Vec<usize> = (0..n).collect();
    fn find(parent: &mut [usize], mut x: usize) -> usize {
        while parent[x] != x {
            parent[x] = parent[parent[x]];
            x = parent[x];
        }
        x
    }
    for &(s, t, _) in &g.edges {
        let (a, b) = (find(&mut parent, s), find(&mut parent, t));
        if a != b {
            parent[a] = b;
        }
    }
    let mut label = HashMap::new();
    let mut comp = vec![0; n];
    let mut sizes = Vec::new();
    for (i, c) in comp.iter_mut().enumerate() {
        let root = find(&mut parent, i);
        let next = label.len();
        let id = *label.entry(root).or_insert(next);
        if id == sizes.len() {
            sizes.push(0);
        }
        sizes[id] += 1;
        *c = id;
    }
    (comp, sizes)
}

/// Weighted PageRank (damping 0.85); undirected edges count both ways and dangling
/// nodes spread their rank evenly. Scores sum to 1.
pub fn pagerank(g: &Graph, deadline: &Deadline) -> Result<Vec<f64>, ToolError> {
    let n = g.len();
    let d = 0.85;
    let mut out_weight = vec![0.0; n];
    let mut links: Vec<(usize, usize, f64)> = Vec::with_capacity(g.edges.len() * 2);
    for &(s, t, w) in &g.edges {
        links.push((s, t, w));
        out_weight[s] += w;
        if !g.directed && s != t {
            links.push((t, s, w));
            out_weight[t] += w;
        }
    }
    let mut rank = vec![1.0 / n as f64; n];
    for _ in 0..100 {
        deadline.check()?;
        let dangling: f64 = (0..n)
            .filter(|&i| out_weight[i] == 0.0)
            .map(|i| rank[i])
            .sum();
        let base = (1.0 - d) / n as f64 + d * dangling / n as f64;
        let mut next = vec![base; n];
        for &(s, t, w) in &links {
            next[t] += d * rank[s] * w / out_weight[s];
        }
        let delta: f64 = next.iter().zip(&rank).map(|(a, b)| (a - b).abs()).sum();
        rank = next;
        if delta < 1e-10 {
            break;
        }
    }
    Ok(rank)
}

/// Fruchterman–Reingold with a grid for the repulsive forces, so each iteration costs
/// about O(n + m). Deterministic: same input, same picture. Positions in [0, 1000].
pub fn layout(g: &Graph, deadline: &Deadline) -> Result<Vec<(f64, f64)>, ToolError> {
    let n = g.len();
    let size = 1000.0;
    let k = (size * size / n as f64).sqrt();
    // Start on a golden-angle spiral: spread out, and stable across runs.
    let mut pos: Vec<(f64, f64)> = (0..n)
        .map(|i| {
            let r = size / 2.0 * ((i as f64 + 0.5) / n as f64).sqrt();
            let a = i as f64 * 2.399_963_229_728_653;
            (size / 2.0 + r * a.cos(), size / 2.0 + r * a.sin())
        })
        .collect();
    let iterations = if n <= 500 { 200 } else { 80 };
    let mut temperature = size / 10.0;
    let cell = 2.0 * k;
    for iteration in 0..iterations {
        deadline.progress(
            0.1 + 0.85 * f64::from(iteration) / f64::from(iterations),
            &format!("layout: iteration {} of {iterations}", iteration + 1),
        )?;
        let mut disp = vec![(0.0, 0.0); n];
        let mut grid: HashMap<(i64, i64), Vec<usize>> = HashMap::new();
        for (i, &(x, y)) in pos.iter().enumerate() {
            grid.entry(((x / cell) as i64, (y / cell) as i64))
                .or_default()
                .push(i);
        }
        for (i, &(x, y)) in pos.iter().enumerate() {
            let (cx, cy) = ((x / cell) as i64, (y / cell) as i64);
            for gx in cx - 1..=cx + 1 {
                for gy in cy - 1..=cy + 1 {
                    for &j in grid.get(&(gx, gy)).map(Vec::as_slice).unwrap_or(&[]) {
                        if i == j {
                            continue;
                        }
                        let (dx, dy) = (x - pos[j].0, y - pos[j].1);
                        let dist = (dx * dx + dy * dy).sqrt().max(0.01);
                        if dist < cell {
                            let f = k * k / dist;
                            disp[i].0 += dx / dist * f;
                            disp[i].1 += dy / dist * f;
                        }
                    }
                }
            }
        }
        for &(s, t, _) in &g.edges {
            if s == t {
                continue;
            }
            let (dx, dy) = (pos[s].0 - pos[t].0, pos[s].1 - pos[t].1);
            let dist = (dx * dx + dy * dy).sqrt().max(0.01);
            let f = dist * dist / k;
            disp[s].0 -= dx / dist * f;
            disp[s].1 -= dy / dist * f;
            disp[t].0 += dx / dist * f;
            disp[t].1 += dy / dist * f;
        }
        for (p, d) in pos.iter_mut().zip(&disp) {
            let len = (d.0 * d.0 + d.1 * d.1).sqrt().max(0.01);
            let step = len.min(temperature);
            p.0 = (p.0 + d.0 / len * step).clamp(0.0, size);
            p.1 = (p.1 + d.1 / len * step).clamp(0.0, size);
        }
        temperature = (temperature * 0.97).max(1.0);
    }
    Ok(pos)
}

pub fn run(params: &Value, deadline: &Deadline) -> Result<Vec<Output>, ToolError> {
    let (g, title) = parse(params)?;
    let n = g.len();
    let (comp, sizes) = components(&g);
    let rank = pagerank(&g, deadline)?;
    let pos = layout(&g, deadline)?;

    let mut degree = vec![0u64; n];
    let mut in_degree = vec![0u64; n];
    let mut out_degree = vec![0u64; n];
    for &(s, t, _) in &g.edges {
        degree[s] += 1;
        degree[t] += 1;
        out_degree[s] += 1;
        in_degree[t] += 1;
    }
    let mut by_rank: Vec<usize> = (0..n).collect();
    by_rank.sort_by(|&a, &b| rank[b].total_cmp(&rank[a]).then(a.cmp(&b)));
    let mut sorted_sizes = sizes.clone();
    sorted_sizes.sort_unstable_by(|a, b| b.cmp(a));
    let max_edges = if g.directed {
        n * n.saturating_sub(1)
    } else {
        n * n.saturating_sub(1) / 2
    };

    let nodes: Vec<Value> = (0..n)
        .map(|i| {
            let mut v = json!({
                "id": g.ids[i], "label": g.labels[i], "degree": degree[i],
                "component": comp[i], "pagerank": round6(rank[i]),
            });
            if g.directed {
                v["in_degree"] = json!(in_degree[i]);
                v["out_degree"] = json!(out_degree[i]);
            }
            if let Some(group) = &g.groups[i] {
                v["group"] = json!(group);
            }
            v
        })
        .collect();
    let stats = json!({
        "title": title,
        "directed": g.directed,
        "node_count": n,
        "edge_count": g.edges.len(),
        "density": if max_edges == 0 { 0.0 } else { round6(g.edges.len() as f64 / max_edges as f64) },
        "degree": {
            "min": degree.iter().min().copied().unwrap_or(0),
            "max": degree.iter().max().copied().unwrap_or(0),
            "mean": round6(degree.iter().sum::<u64>() as f64 / n as f64),
        },
        "components": { "count": sizes.len(), "sizes": sorted_sizes },
        "top_pagerank": by_rank.iter().take(10)
            .map(|&i| json!({"id": g.ids[i], "label": g.labels[i], "pagerank": round6(rank[i])}))
            .collect::<Vec<_>>(),
        "nodes": nodes,
    });
    let html = render_html(&g, &title, &pos, &rank, &comp, &degree);
    let json_bytes =
        serde_json::to_vec_pretty(&stats).map_err(|e| ToolError::InvalidInput(e.to_string()))?;
    Ok(vec![
        Output::new("graph.html", html),
        Output::new("graph.json", json_bytes),
    ])
}

fn round6(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

const PALETTE: [&str; 10] = [
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
    "#9c755f", "#bab0ac",
];

/// The page: an SVG drawn here, plus a few lines of inline script for pan, zoom,
/// dragging and highlighting. A CSP forbids every network fetch.
fn render_html(
    g: &Graph,
    title: &str,
    pos: &[(f64, f64)],
    rank: &[f64],
    comp: &[usize],
    degree: &[u64],
) -> String {
    let n = g.len();
    let max_rank = rank
        .iter()
        .copied()
        .fold(0.0, f64::max)
        .max(f64::MIN_POSITIVE);
    let mut groups: Vec<&str> = g.groups.iter().flatten().map(String::as_str).collect();
    groups.sort_unstable();
    groups.dedup();
    let color = |i: usize| match &g.groups[i] {
        Some(gr) => PALETTE[groups.iter().position(|x| x == gr).unwrap_or(0) % PALETTE.len()],
        None => PALETTE[comp[i] % PALETTE.len()],
    };
    let show_labels = n <= 200;
    let mut svg = String::new();
    svg.push_str("<g id=\"edges\">");
    for (e, &(s, t, w)) in g.edges.iter().enumerate() {
        svg.push_str(&format!(
            "<line data-e=\"{e}\" x1=\"{:.1}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke-width=\"{:.2}\"{}/>",
            pos[s].0, pos[s].1, pos[t].0, pos[t].1,
            (w.ln_1p()).clamp(0.5, 4.0),
            if g.directed { " marker-end=\"url(#arrow)\"" } else { "" }
        ));
    }
    svg.push_str("</g><g id=\"nodes\">");
    for i in 0..n {
        let r = 4.0 + 12.0 * (rank[i] / max_rank).sqrt();
        svg.push_str(&format!(
            "<g class=\"node\" data-i=\"{i}\" transform=\"translate({:.1},{:.1})\"><circle r=\"{r:.1}\" fill=\"{}\"/>{}<title>{} (degree {}, PageRank {:.4})</title></g>",
            pos[i].0, pos[i].1, color(i),
            if show_labels { format!("<text x=\"{:.1}\" y=\"4\">{}</text>", r + 2.0, escape(&g.labels[i])) } else { String::new() },
            escape(&g.labels[i]), degree[i], rank[i]
        ));
    }
    svg.push_str("</g>");
    let edges: Vec<[usize; 2]> = g.edges.iter().map(|&(s, t, _)| [s, t]).collect();
    let data = script_json(&json!({ "edges": edges }));
    format!(
        r##"<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
body{{margin:0;font:14px system-ui,sans-serif;background:#fafafa;color:#222}}
header{{padding:8px 12px;border-bottom:1px solid #ddd;background:#fff}}
h1{{font-size:18px;margin:0}} small{{color:#555}}
svg{{width:100vw;height:calc(100vh - 52px);display:block;cursor:grab}}
line{{stroke:#999;stroke-opacity:.6}} .node circle{{stroke:#fff;stroke-width:1.5;cursor:pointer}}
text{{fill:#222;pointer-events:none;paint-order:stroke;stroke:#fff;stroke-width:.3em;stroke-linejoin:round}}
.dim{{opacity:.15}} .hi line,.hi{{stroke:#d62728;stroke-opacity:1}}
</style></head>
<body>
<header><h1>{title}</h1><small>{n} nodes, {m} edges. Drag to pan, wheel to zoom, drag a node to move it, click a node to highlight its neighbours.</small></header>
<svg id="graph" viewBox="-20 -20 1040 1040" role="img" aria-label="{title}">
<defs><marker id="arrow" viewBox="0 0 10 10" refX="18" refY="5" markerWidth="6" markerHeight="6" orient="auto"><path d="M0,0L10,5L0,10z" fill="#999"/></marker></defs>
<g id="view">{svg}</g></svg>
<script id="graph-data" type="application/json">{data}</script>
<script>
(function(){{
var data=JSON.parse(document.getElementById('graph-data').textContent);
var svg=document.getElementById('graph'),view=document.getElementById('view');
var nodes=[].slice.call(document.querySelectorAll('.node')),lines=[].slice.call(document.querySelectorAll('#edges line'));
var tx=0,ty=0,s=1,drag=null,last=null;
// Labels stay about 13 screen pixels high whatever the frame's size and the zoom: the
// drawing is 1040 units across, so a fixed size in units would shrink with the frame.
function apply(){{view.setAttribute('transform','translate('+tx+','+ty+') scale('+s+')');
 var m=svg.getScreenCTM(),unit=m&&m.a>0?m.a:1;view.style.fontSize=(13/unit/s)+'px';}}
window.addEventListener('resize',apply);
function pt(e){{var p=svg.createSVGPoint();p.x=e.clientX;p.y=e.clientY;return p.matrixTransform(svg.getScreenCTM().inverse());}}
svg.addEventListener('wheel',function(e){{e.preventDefault();var p=pt(e),f=e.deltaY<0?1.15:1/1.15;tx=p.x-(p.x-tx)*f;ty=p.y-(p.y-ty)*f;s*=f;apply();}},{{passive:false}});
svg.addEventListener('mousedown',function(e){{var n=e.target.closest('.node');drag=n?n:'pan';last=pt(e);}});
window.addEventListener('mouseup',function(){{drag=null;}});
window.addEventListener('mousemove',function(e){{if(!drag)return;var p=pt(e),dx=p.x-last.x,dy=p.y-last.y;last=p;
 if(drag==='pan'){{tx+=dx;ty+=dy;apply();return;}}
 var i=+drag.dataset.i,m=/translate\(([-\d.]+),([-\d.]+)\)/.exec(drag.getAttribute('transform'));
 var x=+m[1]+dx/s,y=+m[2]+dy/s;drag.setAttribute('transform','translate('+x+','+y+')');
 data.edges.forEach(function(ed,k){{if(ed[0]===i){{lines[k].setAttribute('x1',x);lines[k].setAttribute('y1',y);}}if(ed[1]===i){{lines[k].setAttribute('x2',x);lines[k].setAttribute('y2',y);}}}});}});
svg.addEventListener('click',function(e){{var n=e.target.closest('.node');nodes.forEach(function(x){{x.classList.remove('dim');}});lines.forEach(function(l){{l.classList.remove('dim','hi');}});
 if(!n)return;var i=+n.dataset.i,keep={{}};keep[i]=1;
 data.edges.forEach(function(ed,k){{if(ed[0]===i||ed[1]===i){{keep[ed[0]]=keep[ed[1]]=1;lines[k].classList.add('hi');}}else lines[k].classList.add('dim');}});
 nodes.forEach(function(x){{if(!keep[+x.dataset.i])x.classList.add('dim');}});}});
apply();
}})();
</script>
</body></html>
"##,
        title = escape(title),
        n = n,
        m = g.edges.len(),
        svg = svg,
        data = data,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn deadline() -> Deadline<'static> {
        Deadline::after(Duration::from_secs(20))
    }

    fn stats(outputs: &[Output]) -> Value {
        let json = outputs.iter().find(|o| o.name == "graph.json").unwrap();
        serde_json::from_slice(&json.bytes).unwrap()
    }

    #[test]
    fn small_graph_statistics() {
        let params = json!({
            "nodes": [{"id": "a"}, {"id": "b"}, {"id": "c"}, {"id": "lonely"}],
            "edges": [{"source": "a", "target": "b"}, {"source": "b", "target": "c"}, {"source": "c", "target": "a"}]
        });
        let out = run(&params, &deadline()).unwrap();
        let s = stats(&out);
        assert_eq!(s["node_count"], 4);
        assert_eq!(s["edge_count"], 3);
        assert_eq!(s["components"]["count"], 2);
        assert_eq!(s["components"]["sizes"], json!([3, 1]));
        assert_eq!(s["degree"]["max"], 2);
        assert_eq!(s["degree"]["min"], 0);
        let total: f64 = s["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["pagerank"].as_f64().unwrap())
            .sum();
        assert!((total - 1.0).abs() < 1e-4, "{total}");
        // The triangle's nodes outrank the isolated one.
        assert_ne!(s["top_pagerank"][0]["id"], "lonely");
    }

    #[test]
    fn pagerank_favours_the_hub_of_a_star() {
        let edges: Vec<Value> = (0..5)
            .map(|i| json!({"source": format!("leaf{i}"), "target": "hub"}))
            .collect();
        let out = run(&json!({"edges": edges, "directed": true}), &deadline()).unwrap();
        let s = stats(&out);
        assert_eq!(s["top_pagerank"][0]["id"], "hub");
        let hub = s["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["id"] == "hub")
            .unwrap();
        assert_eq!(hub["in_degree"], 5);
        assert_eq!(hub["out_degree"], 0);
    }

    #[test]
    fn csv_edge_lists_are_accepted() {
        let out = run(
            &json!({"edges_csv": "source,target,weight\na,b,2\nb,c,\n"}),
            &deadline(),
        )
        .unwrap();
        let s = stats(&out);
        assert_eq!(s["node_count"], 3);
        assert_eq!(s["edge_count"], 2);
    }

    #[test]
    fn html_is_self_contained_and_escaped() {
        let params = json!({"title": "<script>alert(1)</script>", "edges": [{"source": "<b>x</b>", "target": "y"}]});
        let out = run(&params, &deadline()).unwrap();
        let html = String::from_utf8(out[0].bytes.clone()).unwrap();
        assert_eq!(out[0].name, "graph.html");
        assert!(html.contains("&lt;b&gt;x&lt;/b&gt;"));
        assert!(!html.contains("<script>alert(1)"));
        assert!(
            !html.contains("http://") && !html.contains("https://"),
            "no network references"
        );
        assert!(html.contains("default-src 'none'"));
        assert_eq!(html.matches("<circle").count(), 2);
    }

    #[test]
    fn layout_is_deterministic_and_in_bounds() {
        let (g, _) = parse(
            &json!({"edges": [{"source": "a", "target": "b"}, {"source": "b", "target": "c"}]}),
        )
        .unwrap();
        let a = layout(&g, &deadline()).unwrap();
        assert_eq!(a, layout(&g, &deadline()).unwrap());
        assert!(a
            .iter()
            .all(|&(x, y)| (0.0..=1000.0).contains(&x) && (0.0..=1000.0).contains(&y)));
    }

    #[test]
    fn bad_input_is_a_clear_error() {
        let cases = [
            json!({"edges": []}),
            json!({}),
            json!({"edges": [], "edges_csv": "source,target\n"}),
            json!({"nodes": [{"id": "a"}, {"id": "a"}], "edges": []}),
            json!({"edges": [{"source": " ", "target": "b"}]}),
            json!({"edges": [{"source": "a", "target": "b", "weight": -1}]}),
            json!({"edges_csv": "from,to\na,b\n"}),
            json!({"edges_csv": "source,target,weight\na,b,heavy\n"}),
            json!({"edges_csv": "source,target\na,b,c\n"}),
            json!({"edges": "not a list"}),
        ];
        for params in cases {
            match run(&params, &deadline()) {
                Err(ToolError::InvalidInput(_)) => {}
                other => panic!("{params}: {other:?}"),
            }
        }
    }

    #[test]
    fn limits_are_enforced() {
        let csv = format!("source,target\n{}", "a,b\n".repeat(MAX_EDGES + 1));
        assert!(matches!(
            run(&json!({"edges_csv": csv}), &deadline()),
            Err(ToolError::TooLarge(_))
        ));
        let big = "x".repeat(MAX_CSV_BYTES + 1);
        assert!(matches!(
            run(&json!({"edges_csv": big}), &deadline()),
            Err(ToolError::TooLarge(_))
        ));
    }

    #[test]
    fn an_expired_deadline_times_out() {
        let r = run(
            &json!({"edges": [{"source": "a", "target": "b"}]}),
            &Deadline::expired(),
        );
        assert!(matches!(r, Err(ToolError::Timeout(_))));
    }

    #[test]
    fn a_large_graph_is_drawn_and_counted() {
        // Speed is the benchmark's business (no timed tests); this checks that a graph
        // near the limits goes through every stage.
        let edges: Vec<Value> = (0..4000)
            .map(|i| json!({"source": format!("n{i}"), "target": format!("n{}", (i * 7 + 1) % 2000)}))
            .collect();
        let out = run(&json!({"edges": edges}), &deadline()).unwrap();
        assert_eq!(stats(&out)["node_count"], 4000);
        let html = String::from_utf8(out[0].bytes.clone()).unwrap();
        assert_eq!(html.matches("<circle").count(), 4000);
    }
}
