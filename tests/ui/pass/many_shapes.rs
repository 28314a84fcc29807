use eventsourcing::prelude::*;
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Shape { Circle(f64), Square { side: f64 } }

#[derive(Aggregate, Debug, Serialize, Deserialize)]
#[serde(crate = "eventsourcing::serde")]
#[aggregate(name = "Board")]
struct Canvas { meta: Meta<Self>, shapes: Vec<Shape>, tags: BTreeMap<String, u32>, cleared: u32, title: String }

#[events]
impl Canvas {
    #[event(name = "Opened")]
    fn open() -> Canvas { Canvas { meta: Meta::default(), shapes: vec![], tags: BTreeMap::new(), cleared: 0, title: String::new() } }

    #[event]
    fn import(shapes: Vec<Shape>) -> Self {
        Self { meta: Meta::default(), shapes, tags: BTreeMap::new(), cleared: 0, title: String::new() }
    }

    #[event]
    fn draw(&mut self, shape: Shape, at: Option<(i32, i32)>) { let _ = at; self.shapes.push(shape); }

    #[event]
    fn clear(&mut self) { self.shapes.clear(); self.cleared += 1; }

    #[event]
    fn tag(&mut self, tags: BTreeMap<String, u32>, id: eventsourcing::Uuid) { let _ = id; self.tags.extend(tags); }

    /// A documented event method, a `mut` argument, and an earlier stored name still read.
    #[event("Titled", alias = "Named")]
    fn title(&mut self, mut title: String) { title.truncate(100); self.title = title; }
}

fn main() {
    use eventsourcing::DomainEvent;
    assert_eq!(<Canvas as eventsourcing::Aggregate>::TYPE_NAME, "Board");
    assert_eq!(CanvasEvent::NAMES, &["Opened", "Import", "Draw", "Clear", "Tag", "Titled", "Named"]);
    let old = CanvasEvent::decode(&eventsourcing::JsonCodec, "Named", 1, br#"{"title":"t"}"#).unwrap();
    assert_eq!(old.name(), "Titled");
    let mut c = Canvas::open();
    c.draw(Shape::Circle(1.0), None);
    c.clear();
    c.tag(BTreeMap::new(), eventsourcing::new_id());
    c.title("x".repeat(101));
    assert_eq!(c.title.len(), 100);
    assert_eq!(c.version(), 5);
    assert_eq!(c.cleared, 1);
    let d = Canvas::import(vec![Shape::Square { side: 2.0 }]);
    assert_eq!(d.shapes.len(), 1);
}
