//! Resource ("Part A") and process tags, computed once per resource and shared by every item
//! (MAPPING.md §2.1–§2.2).
//!
//! The process tags are the Python exporter's (§2.1, the normative profile): `ai.device.id` =
//! the host name (a resource `device.id` overrides it), `ai.device.locale` = the process locale
//! from `LC_ALL`, `LC_CTYPE`, `LANG` or `LANGUAGE` (`en_US.UTF-8` → `en_US`; none for `C` and
//! `POSIX`), `ai.device.type = "Other"`, and `ai.internal.sdkVersion`. With a resource,
//! `ai.internal.nodeName` repeats `ai.cloud.roleInstance`, also as in the Python exporter. The
//! JS and .NET exporters send none of these. They are about 120 bytes of JSON per item, the
//! same in every item, and no measurable CPU; after gzip at level 2 they cost about 1 byte per
//! log record and 8 per span (`benches/`), which is why span bodies are compressed at level 4
//! (see `transmit/encode.rs`).

use std::borrow::Cow;

use opentelemetry::Value;
use opentelemetry_sdk::Resource;

use super::attributes::{is_empty_value, render};
use super::semconv::{Key, K8S_WORKLOAD, ROLE_INSTANCE};
use crate::wire::{tag, SharedTags};

/// Overrides `ai.cloud.role` (as in the .NET exporter).
const ENV_ROLE_NAME: &str = "APPLICATIONINSIGHTS_CLOUD_ROLE_NAME";
/// Overrides `ai.cloud.roleInstance` (as in the .NET exporter).
const ENV_ROLE_INSTANCE: &str = "APPLICATIONINSIGHTS_CLOUD_ROLE_INSTANCE";
/// Overrides `ai.application.ver` (as in the .NET exporter).
const ENV_COMPONENT_VERSION: &str = "APPLICATIONINSIGHTS_COMPONENT_VERSION";

/// The version of `rustc` that built this crate, written by `build.rs` (may be empty).
const RUSTC_VERSION: &str = match option_env!("AZURE_MONITOR_RUSTC_VERSION") {
    Some(v) => v,
    None => "",
};

/// The resource and process tags for items of `resource`, reading the process environment
/// and the host name.
pub(crate) fn shared_tags(resource: &Resource) -> SharedTags {
    shared_tags_with(
        resource,
        &|name| std::env::var(name).ok(),
        &host_name_from_kernel,
    )
}

/// [`shared_tags`] with the environment lookup (`env`) and the host-name source (`host_name`,
/// tried before the `HOSTNAME` and `COMPUTERNAME` variables) passed in, for tests.
pub(crate) fn shared_tags_with(
    resource: &Resource,
    env: &dyn Fn(&str) -> Option<String>,
    host_name: &dyn Fn() -> Option<String>,
) -> SharedTags {
    let env = |name: &str| env(name).filter(|v| !v.is_empty());
    let host = host_name()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| env("HOSTNAME"))
        .or_else(|| env("COMPUTERNAME"));
    let mut tags = SharedTags::default();
    if let Some(host) = &host {
        tags.set(tag::DEVICE_ID, host);
    }
    // PY `_populate_part_a_fields` runs only for a resource with attributes.
    if !resource.is_empty() {
        let role = cloud_role(resource);
        tags.set(tag::CLOUD_ROLE, &role);
        match first(resource, ROLE_INSTANCE) {
            Some(instance) => tags.set(tag::CLOUD_ROLE_INSTANCE, &instance),
            None => {
                if let Some(host) = &host {
                    tags.set(tag::CLOUD_ROLE_INSTANCE, host);
                }
            }
        }
        for (key, tag) in [
            (Key::DeviceId, tag::DEVICE_ID),
            (Key::DeviceModelName, tag::DEVICE_MODEL),
            (Key::DeviceManufacturer, tag::DEVICE_OEM_NAME),
            (Key::ServiceVersion, tag::APPLICATION_VER),
        ] {
            if let Some(v) = first(resource, &[key]) {
                tags.set(tag, &v);
            }
        }
    }
    for (var, tag) in [
        (ENV_ROLE_NAME, tag::CLOUD_ROLE),
        (ENV_ROLE_INSTANCE, tag::CLOUD_ROLE_INSTANCE),
        (ENV_COMPONENT_VERSION, tag::APPLICATION_VER),
    ] {
        if let Some(v) = env(var) {
            tags.set(tag, &v);
        }
    }
    if let Some(locale) = locale(&env) {
        tags.set(tag::DEVICE_LOCALE, &locale);
    }
    tags.set(tag::DEVICE_TYPE, "Other");
    tags.set(tag::INTERNAL_SDK_VERSION, &sdk_version(resource, &env));
    if !resource.is_empty() {
        if let Some(instance) = tags.get(tag::CLOUD_ROLE_INSTANCE.name).map(str::to_owned) {
            tags.set(tag::INTERNAL_NODE_NAME, &instance);
        }
    }
    tags
}

/// The process locale as Python's `locale.getdefaultlocale()` finds it: the first of
/// `LC_ALL`, `LC_CTYPE`, `LANG`, `LANGUAGE` that is set, without its encoding and modifier
/// (`de_DE.UTF-8@euro` → `de_DE`); none for `C` and `POSIX`.
fn locale(env: &dyn Fn(&str) -> Option<String>) -> Option<String> {
    let value = ["LC_ALL", "LC_CTYPE", "LANG", "LANGUAGE"]
        .iter()
        .find_map(|name| env(name))?;
    // LANGUAGE may be a list (`en_GB:en`).
    let first = value.split(':').next().unwrap_or_default();
    let name = first.split(['.', '@']).next().unwrap_or_default().trim();
    (!name.is_empty() && name != "C" && name != "POSIX").then(|| name.to_owned())
}

/// The first of `keys` in the resource with a non-empty value, rendered.
fn first<'r>(resource: &'r Resource, keys: &[Key]) -> Option<Cow<'r, str>> {
    keys.iter()
        .filter_map(|k| resource.get_ref(&opentelemetry::Key::from_static_str(k.as_str())))
        .find(|v| !is_empty_value(v))
        .map(render)
}

/// `ai.cloud.role` (PY/JS `_get_cloud_role`, MAPPING.md §2.2): `{service.namespace}.{service.name}`
/// or `{service.name}`; a name starting with `unknown_service` gives way to the first
/// Kubernetes workload name, if there is one.
fn cloud_role(resource: &Resource) -> String {
    let mut role = String::new();
    if let Some(name) = first(resource, &[Key::ServiceName]) {
        if let Some(namespace) = first(resource, &[Key::ServiceNamespace]) {
            role.reserve(namespace.len() + 1 + name.len());
            role.push_str(&namespace);
            role.push('.');
        }
        role.push_str(&name);
        if !name.starts_with("unknown_service") {
            return role;
        }
    }
    match first(resource, K8S_WORKLOAD) {
        Some(workload) => workload.into_owned(),
        None => role,
    }
}

/// `ai.internal.sdkVersion` (MAPPING.md §2.1 R): `{rp}{os}m_rust{rustc}:otel{sdk}:ext{crate}`,
/// for example `ulm_rust1.85.0:otel0.33.1:ext0.1.0`, at most 64 characters.
///
/// - `rp`, the resource provider: `f` Azure Functions, `a` App Service, `k` Kubernetes, `u`
///   unknown;
/// - `os`: `l` Linux, `w` Windows, `u` other;
/// - `m`: attached manually (there is no auto-attach for Rust);
/// - the SDK version is the resource's `telemetry.sdk.version` when the resource says it is
///   the Rust SDK (`opentelemetry_sdk` puts it there by default), else it is left out.
fn sdk_version(resource: &Resource, env: &dyn Fn(&str) -> Option<String>) -> String {
    let rp = if env("FUNCTIONS_WORKER_RUNTIME").is_some() {
        'f'
    } else if env("WEBSITE_SITE_NAME").is_some() {
        'a'
    } else if env("AKS_ARM_NAMESPACE_ID").is_some() || env("KUBERNETES_SERVICE_HOST").is_some() {
        'k'
    } else {
        'u'
    };
    let os = if cfg!(target_os = "linux") {
        'l'
    } else if cfg!(target_os = "windows") {
        'w'
    } else {
        'u'
    };
    let is_rust_sdk = matches!(
        resource.get_ref(&opentelemetry::Key::from_static_str(Key::TelemetrySdkLanguage.as_str())),
        Some(Value::String(s)) if s.as_str() == "rust"
    );
    let otel = match first(resource, &[Key::TelemetrySdkVersion]) {
        Some(v) if is_rust_sdk && v.len() <= 16 => v,
        _ => Cow::Borrowed(""),
    };
    let ext = env!("CARGO_PKG_VERSION");
    let mut s = String::with_capacity(24 + RUSTC_VERSION.len() + otel.len() + ext.len());
    s.push(rp);
    s.push(os);
    s.push_str("m_rust");
    s.push_str(RUSTC_VERSION);
    s.push_str(":otel");
    s.push_str(&otel);
    s.push_str(":ext");
    s.push_str(ext);
    s
}

/// The kernel's host name on Linux; `None` elsewhere or when it cannot be read.
pub(crate) fn host_name_from_kernel() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname").ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::KeyValue;
    use std::collections::HashMap;

    fn resource(attrs: &[(&str, &str)]) -> Resource {
        Resource::builder_empty()
            .with_attributes(
                attrs
                    .iter()
                    .map(|(k, v)| KeyValue::new((*k).to_owned(), (*v).to_owned())),
            )
            .build()
    }

    fn tags_with(res: &Resource, env: &[(&str, &str)], host: Option<&str>) -> serde_json::Value {
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let host = host.map(str::to_owned);
        let shared = shared_tags_with(res, &|k| env.get(k).cloned(), &|| host.clone());
        serde_json::to_value(crate::wire::Tags::new(&shared)).unwrap_or_default()
    }

    fn tags(res: &Resource) -> serde_json::Value {
        tags_with(res, &[], Some("my-host"))
    }

    #[test]
    fn part_a_from_the_resource() {
        // py-span-partA
        let t = tags(&resource(&[
            ("service.name", "testServiceName"),
            ("service.namespace", "testServiceNamespace"),
            ("service.instance.id", "testServiceInstanceId"),
            ("service.version", "1.2.3"),
            ("device.id", "dev"),
            ("device.model.name", "model"),
            ("device.manufacturer", "oem"),
        ]));
        assert_eq!(t["ai.cloud.role"], "testServiceNamespace.testServiceName");
        assert_eq!(t["ai.cloud.roleInstance"], "testServiceInstanceId");
        assert_eq!(t["ai.application.ver"], "1.2.3");
        assert_eq!(t["ai.device.id"], "dev");
        assert_eq!(t["ai.device.model"], "model");
        assert_eq!(t["ai.device.oemName"], "oem");
        // The Python exporter's process tags (§2.1); no locale variable is set here.
        assert_eq!(t["ai.device.type"], "Other");
        assert_eq!(t["ai.internal.nodeName"], "testServiceInstanceId");
        assert!(t.get("ai.device.locale").is_none());
        // Without a resource `device.id`, the host name.
        let t = tags(&resource(&[("service.name", "s")]));
        assert_eq!(t["ai.device.id"], "my-host");
        assert_eq!(t["ai.internal.nodeName"], "my-host");
    }

    #[test]
    fn locale_as_python_finds_it() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                vars.iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| (*v).to_owned())
            }
        };
        assert_eq!(
            locale(&env(&[("LANG", "en_US.UTF-8")])).as_deref(),
            Some("en_US")
        );
        assert_eq!(
            locale(&env(&[("LC_ALL", "de_DE.UTF-8@euro"), ("LANG", "en_US")])).as_deref(),
            Some("de_DE")
        );
        assert_eq!(
            locale(&env(&[("LANGUAGE", "en_GB:en")])).as_deref(),
            Some("en_GB")
        );
        assert_eq!(locale(&env(&[("LANG", "C.UTF-8")])), None);
        assert_eq!(locale(&env(&[("LC_ALL", "POSIX")])), None);
        assert_eq!(locale(&env(&[])), None);
        let t = tags_with(
            &resource(&[("service.name", "s")]),
            &[("LANG", "fr_FR.UTF-8")],
            None,
        );
        assert_eq!(t["ai.device.locale"], "fr_FR");
    }

    #[test]
    fn cloud_role_table() {
        let table: &[(&[(&str, &str)], &str)] = &[
            // py-span-partA-default
            (&[("service.name", "testServiceName")], "testServiceName"),
            // py-util-populate-part-a-fields-unknown-service
            (
                &[
                    ("service.name", "unknown_servicefoobar"),
                    ("service.namespace", "testServiceNamespace"),
                ],
                "testServiceNamespace.unknown_servicefoobar",
            ),
            (
                &[
                    ("service.name", "unknown_service:rust"),
                    ("k8s.statefulset.name", "sts"),
                    ("k8s.job.name", "job"),
                ],
                "sts",
            ),
            (
                &[
                    ("service.name", "unknown_service"),
                    ("k8s.deployment.name", "deploy"),
                    ("k8s.replicaset.name", "rs"),
                ],
                "deploy",
            ),
            (&[("k8s.daemonset.name", "ds")], "ds"),
            (
                &[("k8s.cronjob.name", "cron"), ("k8s.job.name", "job")],
                "job",
            ),
            (
                &[("service.name", "svc"), ("k8s.deployment.name", "deploy")],
                "svc",
            ),
            (&[("service.namespace", "ns")], ""),
        ];
        for (attrs, want) in table {
            let t = tags(&resource(attrs));
            let got = t
                .get("ai.cloud.role")
                .and_then(|v| v.as_str())
                .unwrap_or("");
            assert_eq!(got, *want, "{attrs:?}");
        }
    }

    #[test]
    fn role_instance_order() {
        let t = tags(&resource(&[
            ("service.instance.id", "inst"),
            ("k8s.pod.name", "pod"),
        ]));
        assert_eq!(t["ai.cloud.roleInstance"], "pod");
        let t = tags(&resource(&[("service.name", "s")]));
        assert_eq!(t["ai.cloud.roleInstance"], "my-host");
        let t = tags_with(
            &resource(&[("service.name", "s")]),
            &[("HOSTNAME", "env-host"), ("COMPUTERNAME", "win")],
            Some("\n"),
        );
        assert_eq!(t["ai.cloud.roleInstance"], "env-host");
        let t = tags_with(
            &resource(&[("service.name", "s")]),
            &[("COMPUTERNAME", "win")],
            None,
        );
        assert_eq!(t["ai.cloud.roleInstance"], "win");
        let t = tags_with(&resource(&[("service.name", "s")]), &[], None);
        assert!(t.get("ai.cloud.roleInstance").is_none());
    }

    #[test]
    fn environment_overrides() {
        let t = tags_with(
            &resource(&[("service.name", "s"), ("service.version", "1")]),
            &[
                (ENV_ROLE_NAME, "role"),
                (ENV_ROLE_INSTANCE, "instance"),
                (ENV_COMPONENT_VERSION, "2"),
            ],
            Some("host"),
        );
        assert_eq!(t["ai.cloud.role"], "role");
        assert_eq!(t["ai.cloud.roleInstance"], "instance");
        assert_eq!(t["ai.application.ver"], "2");
        // An empty resource: no Part A, but the overrides and the SDK version.
        let t = tags_with(
            &Resource::builder_empty().build(),
            &[(ENV_ROLE_NAME, "role")],
            Some("h"),
        );
        assert_eq!(t["ai.cloud.role"], "role");
        assert!(t.get("ai.cloud.roleInstance").is_none());
        assert!(t.get("ai.internal.nodeName").is_none());
        assert_eq!(t["ai.device.id"], "h");
        assert_eq!(t["ai.device.type"], "Other");
        assert_eq!(t.as_object().map(|o| o.len()), Some(4));
    }

    #[test]
    fn sdk_version_shape() {
        let os = if cfg!(target_os = "linux") {
            'l'
        } else if cfg!(target_os = "windows") {
            'w'
        } else {
            'u'
        };
        let ext = env!("CARGO_PKG_VERSION");
        let default_sdk = Resource::builder().build();
        let sdk = match default_sdk.get(&opentelemetry::Key::from_static_str(
            "telemetry.sdk.version",
        )) {
            Some(v) => v.to_string(),
            None => String::new(),
        };
        assert!(sdk.starts_with("0."), "{sdk}");
        let table: &[(&[(&str, &str)], char)] = &[
            (&[], 'u'),
            (
                &[
                    ("FUNCTIONS_WORKER_RUNTIME", "rust"),
                    ("WEBSITE_SITE_NAME", "x"),
                ],
                'f',
            ),
            (
                &[("WEBSITE_SITE_NAME", "x"), ("KUBERNETES_SERVICE_HOST", "h")],
                'a',
            ),
            (&[("KUBERNETES_SERVICE_HOST", "10.0.0.1")], 'k'),
            (&[("AKS_ARM_NAMESPACE_ID", "id")], 'k'),
        ];
        for (env, rp) in table {
            let t = tags_with(&default_sdk, env, None);
            let v = t["ai.internal.sdkVersion"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let want = format!("{rp}{os}m_rust{RUSTC_VERSION}:otel{sdk}:ext{ext}");
            assert_eq!(v, want);
            assert!(v.chars().count() <= 64);
        }
        assert!(!RUSTC_VERSION.is_empty(), "build.rs should find rustc");
        assert!(RUSTC_VERSION.starts_with("1."), "{RUSTC_VERSION}");
        // Not the Rust SDK: no otel version.
        let t = tags(&resource(&[
            ("telemetry.sdk.language", "python"),
            ("telemetry.sdk.version", "1.20.0"),
        ]));
        let v = t["ai.internal.sdkVersion"].as_str().unwrap_or_default();
        assert!(v.contains(":otel:ext"), "{v}");
    }

    #[test]
    fn long_values_are_truncated() {
        let long = "r".repeat(300);
        let t = tags(&resource(&[
            ("service.name", &long),
            ("k8s.pod.name", &long),
        ]));
        assert_eq!(t["ai.cloud.role"].as_str().map(str::len), Some(256));
        assert_eq!(t["ai.cloud.roleInstance"].as_str().map(str::len), Some(256));
    }
}
