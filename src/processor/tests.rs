#![allow(clippy::unwrap_used)]

use super::*;
use crate::wire::{
    Measurements, MessageData, Properties, RemoteDependencyData, RequestData, SharedTags, Tags,
    TimeAt, Timestamp,
};

fn shared() -> SharedTags {
    let mut shared = SharedTags::default();
    shared.set(tag::CLOUD_ROLE, "detected-role");
    shared.set(tag::DEVICE_ID, "host-1");
    shared
}

fn request(shared: &SharedTags) -> Envelope<'_> {
    let mut tags = Tags::new(shared);
    tags.set_operation([0xab; 16], Some([0xcd; 8]));
    tags.set(tag::OPERATION_NAME, "GET /orders");
    let mut properties = Properties::default();
    properties.insert("user.email", "a@example.com");
    let mut measurements = Measurements::default();
    measurements.insert("items", 3.0);
    Envelope {
        time: Timestamp(std::time::UNIX_EPOCH),
        sample_rate: None,
        ikey: "key",
        tags,
        data: Data::Request(RequestData {
            id: "cdcdcdcdcdcdcdcd".into(),
            name: "GET /orders".into(),
            success: true,
            response_code: "200".into(),
            properties,
            measurements,
            ..Default::default()
        }),
        time_at: TimeAt::Start,
    }
}

fn json(envelope: &Envelope<'_>) -> serde_json::Value {
    let mut fast = Vec::new();
    envelope.write_json(&mut fast);
    let slow = serde_json::to_vec(envelope).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&fast),
        String::from_utf8_lossy(&slow)
    );
    serde_json::from_slice(&fast).unwrap()
}

fn run<'a>(processors: Vec<Arc<Processor>>, envelope: Envelope<'a>) -> Option<serde_json::Value> {
    apply(&processors, envelope).map(|e| json(&e))
}

#[test]
fn the_view_reads_every_field() {
    let shared = shared();
    let seen = Arc::new(std::sync::Mutex::new(String::new()));
    let out = seen.clone();
    let p = Processor::new(move |item| {
        let text = format!(
            "{:?} {:?} role={:?} op={:?} parent={:?} name={:?} props={:?} m={:?} ok={:?} code={:?} rate={}",
            item.kind(),
            item.name(),
            item.tag(ContextTag::CloudRole),
            item.tag(ContextTag::OperationId),
            item.tag(ContextTag::OperationParentId),
            item.tag(ContextTag::OperationName),
            item.properties().collect::<Vec<_>>(),
            item.measurements().collect::<Vec<_>>(),
            item.success(),
            item.result_code(),
            item.sample_rate(),
        );
        *out.lock().unwrap() = text;
    });
    let got = run(vec![p], request(&shared)).unwrap();
    assert_eq!(
        *seen.lock().unwrap(),
        format!(
            "Request Some(\"GET /orders\") role=Some(\"detected-role\") op=Some(\"{}\") parent=Some(\"{}\") name=Some(\"GET /orders\") props=[(\"user.email\", \"a@example.com\")] m=[(\"items\", 3.0)] ok=Some(true) code=Some(\"200\") rate=100",
            "ab".repeat(16),
            "cd".repeat(8)
        )
    );
    // A processor that only reads changes nothing.
    assert_eq!(got, json(&request(&shared)));
}

#[test]
fn edits_reach_the_wire_within_the_limits() {
    let shared = shared();
    let p = Processor::new(|item| {
        item.set_tag(ContextTag::CloudRole, "r".repeat(300));
        item.set_tag(ContextTag::OperationId, "my-operation");
        item.remove_tag(ContextTag::DeviceId);
        item.set_tag(ContextTag::SessionId, "s-1");
        item.set_property("k".repeat(200), "v".repeat(9000));
        item.remove_property("user.email");
        assert!(item.set_measurement("latency", 1.5));
        assert!(item.set_measurement("nan", f64::NAN));
        item.remove_measurement("items");
        assert!(item.set_success(false));
        assert!(item.set_result_code("503"));
        assert!(item.set_name("n".repeat(2000)));
        assert!(!item.set_sample_rate(0.0));
        assert!(!item.set_sample_rate(f64::NAN));
        assert!(item.set_sample_rate(25.0));
    });
    let got = run(vec![p], request(&shared)).unwrap();
    let tags = &got["tags"];
    assert_eq!(tags["ai.cloud.role"].as_str().unwrap().len(), 256);
    assert_eq!(tags["ai.operation.id"], "my-operation");
    assert_eq!(tags["ai.operation.parentId"], "cd".repeat(8));
    assert_eq!(tags["ai.operation.name"], "GET /orders");
    assert_eq!(tags["ai.session.id"], "s-1");
    assert!(tags.get("ai.device.id").is_none(), "{tags}");
    let data = &got["data"]["baseData"];
    let props = data["properties"].as_object().unwrap();
    assert_eq!(props.len(), 1);
    assert_eq!(
        props["k".repeat(150).as_str()].as_str().unwrap().len(),
        8192
    );
    assert_eq!(data["measurements"], serde_json::json!({"latency": 1.5}));
    assert_eq!(data["success"], false);
    assert_eq!(data["responseCode"], "503");
    assert_eq!(data["name"].as_str().unwrap().len(), 1024);
    assert_eq!(got["sampleRate"], 25.0);
}

#[test]
fn removing_operation_ids_and_shared_tags() {
    let shared = shared();
    let p = Processor::new(|item| {
        item.remove_tag(ContextTag::OperationParentId);
        item.remove_tag(ContextTag::CloudRole);
        item.set_tag(ContextTag::UserId, "");
    });
    let got = run(vec![p], request(&shared)).unwrap();
    let tags = got["tags"].as_object().unwrap();
    assert_eq!(tags["ai.operation.id"], "ab".repeat(16));
    assert_eq!(tags["ai.device.id"], "host-1");
    for gone in ["ai.operation.parentId", "ai.cloud.role", "ai.user.id"] {
        assert!(!tags.contains_key(gone), "{gone}");
    }
}

#[test]
fn kinds_without_a_field_refuse_to_set_it() {
    let shared = shared();
    let message = Envelope {
        data: Data::Message(MessageData {
            message: "hello".into(),
            ..Default::default()
        }),
        ..request(&shared)
    };
    let p = Processor::new(|item| {
        assert_eq!(item.kind(), ItemKind::Trace);
        assert_eq!(item.message(), Some("hello"));
        assert_eq!(item.name(), None);
        assert!(!item.set_name("x"));
        assert_eq!(item.success(), None);
        assert!(!item.set_success(true));
        assert_eq!(item.result_code(), None);
        assert!(!item.set_result_code("1"));
        item.set_property("added", "yes");
    });
    let got = run(vec![p], message).unwrap();
    assert_eq!(got["data"]["baseData"]["properties"]["added"], "yes");
    let dependency = Envelope {
        data: Data::RemoteDependency(RemoteDependencyData {
            name: "SELECT".into(),
            ..Default::default()
        }),
        ..request(&shared)
    };
    let p = Processor::new(|item| {
        assert_eq!(item.kind(), ItemKind::Dependency);
        assert_eq!(item.message(), None);
        assert_eq!(item.result_code(), None);
        assert!(item.set_result_code("0"));
    });
    let got = run(vec![p], dependency).unwrap();
    assert_eq!(got["data"]["baseData"]["resultCode"], "0");
}

#[test]
fn discard_keep_and_order() {
    let shared = shared();
    let drop = Processor::new(|item| item.discard());
    assert!(run(vec![drop.clone()], request(&shared)).is_none());
    let keep = Processor::new(|item| {
        assert!(item.is_discarded());
        item.keep();
    });
    assert!(run(vec![drop.clone(), keep], request(&shared)).is_some());
    // Each processor sees the previous one's result.
    let first = Processor::new(|item| item.set_property("step", "1"));
    let second = Processor::new(|item| {
        let step = item.property("step").unwrap_or("none").to_owned();
        item.set_property("step", format!("{step}+2"));
    });
    let got = run(vec![first, second], request(&shared)).unwrap();
    assert_eq!(got["data"]["baseData"]["properties"]["step"], "1+2");
}

#[test]
fn a_panicking_processor_changes_and_drops_nothing() {
    let shared = shared();
    let panics = Processor::new(|item| {
        item.set_tag(ContextTag::CloudRole, "half-done");
        item.discard();
        panic!("processor bug");
    });
    let after = Processor::new(|item| item.set_property("after", "ran"));
    let processors = vec![panics.clone(), after];
    for _ in 0..2 {
        let got = run(processors.clone(), request(&shared)).unwrap();
        assert_eq!(got["tags"]["ai.cloud.role"], "detected-role");
        assert_eq!(got["data"]["baseData"]["properties"]["after"], "ran");
    }
    assert!(panics.reported.load(Ordering::Relaxed));
}
