//! Every attribute key the conversion reads, in one table, with the stable and the legacy
//! semantic-convention names side by side.
//!
//! [`Key`] names one attribute key. The groups below ([`HTTP_METHOD`], [`URL_FULL`], ...) list
//! the keys that carry the same meaning, in priority order: the stable name first, then the
//! legacy ones. [`Known::scan`] reads a span's attributes once into a slot per [`Key`], so a
//! lookup afterwards is an array access.
//!
//! Constants of `opentelemetry_semantic_conventions` are used where they exist and are not
//! deprecated; deprecated and Azure-specific keys are spelled out.

use opentelemetry::{KeyValue, Value};
use opentelemetry_semantic_conventions::attribute as sc;

use super::attributes::{insert_property, is_empty_value, render};
use crate::wire::Properties;
use std::borrow::Cow;

macro_rules! keys {
    ($($name:ident = $key:expr,)*) => {
        /// One attribute key read by the conversion; the variant is the key in camel case
        /// (`HttpRequestMethod` is `http.request.method`). See [`Key::as_str`].
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub(crate) enum Key {
            $($name,)*
        }

        /// The number of [`Key`]s.
        pub(crate) const COUNT: usize = [$(stringify!($name)),*].len();

        #[allow(non_upper_case_globals)]
        mod text {
            use super::sc;
            $(pub(super) const $name: &str = $key;)*
        }

        impl Key {
            /// Every key, in declaration order (`Key::ALL[k as usize] == k`).
            pub(crate) const ALL: [Key; COUNT] = [$(Key::$name,)*];

            /// The attribute key.
            pub(crate) const fn as_str(self) -> &'static str {
                match self {
                    $(Key::$name => text::$name,)*
                }
            }

            /// The [`Key`] for an attribute key, if the conversion reads it.
            pub(crate) fn lookup(key: &str) -> Option<Key> {
                match key {
                    $(text::$name => Some(Key::$name),)*
                    _ => None,
                }
            }
        }
    };
}

keys! {
    // HTTP
    HttpRequestMethod = sc::HTTP_REQUEST_METHOD,
    HttpMethod = "http.method",
    HttpRoute = sc::HTTP_ROUTE,
    HttpResponseStatusCode = sc::HTTP_RESPONSE_STATUS_CODE,
    HttpStatusCode = "http.status_code",
    UrlFull = sc::URL_FULL,
    HttpUrl = "http.url",
    UrlScheme = sc::URL_SCHEME,
    HttpScheme = "http.scheme",
    UrlPath = sc::URL_PATH,
    UrlQuery = sc::URL_QUERY,
    HttpTarget = "http.target",
    HttpHost = "http.host",
    HttpServerName = "http.server_name",
    // Network peers and hosts
    ServerAddress = sc::SERVER_ADDRESS,
    ServerPort = sc::SERVER_PORT,
    NetHostName = "net.host.name",
    NetHostPort = "net.host.port",
    NetPeerName = "net.peer.name",
    NetPeerIp = "net.peer.ip",
    NetPeerPort = "net.peer.port",
    ServicePeerName = sc::SERVICE_PEER_NAME,
    PeerService = "peer.service",
    PeerAddress = "peer.address",
    // Client, user, session
    MicrosoftClientIp = "microsoft.client.ip",
    ClientAddress = sc::CLIENT_ADDRESS,
    HttpClientIp = "http.client_ip",
    // axum-tracing-opentelemetry's name for the client address.
    HttpClientAddress = "http.client.address",
    UserAgentOriginal = sc::USER_AGENT_ORIGINAL,
    HttpUserAgent = "http.user_agent",
    UserAgentSyntheticType = sc::USER_AGENT_SYNTHETIC_TYPE,
    EnduserId = sc::ENDUSER_ID,
    EnduserPseudoId = sc::ENDUSER_PSEUDO_ID,
    SessionId = sc::SESSION_ID,
    // Databases
    DbSystemName = sc::DB_SYSTEM_NAME,
    DbSystem = "db.system",
    DbQueryText = sc::DB_QUERY_TEXT,
    DbStatement = "db.statement",
    DbOperationName = sc::DB_OPERATION_NAME,
    DbOperation = "db.operation",
    DbNamespace = sc::DB_NAMESPACE,
    DbName = "db.name",
    // Messaging
    MessagingSystem = sc::MESSAGING_SYSTEM,
    MessagingDestinationName = sc::MESSAGING_DESTINATION_NAME,
    MessagingDestination = "messaging.destination",
    MessageBusDestination = "message_bus.destination",
    // RPC
    RpcSystemName = sc::RPC_SYSTEM_NAME,
    RpcSystem = "rpc.system",
    RpcGrpcStatusCode = "rpc.grpc.status_code",
    RpcResponseStatusCode = sc::RPC_RESPONSE_STATUS_CODE,
    // Generative AI
    GenAiProviderName = "gen_ai.provider.name",
    GenAiSystem = "gen_ai.system",
    // Azure SDKs
    AzureResourceProviderNamespace = sc::AZURE_RESOURCE_PROVIDER_NAMESPACE,
    AzNamespace = "az.namespace",
    // Azure Monitor specific
    MicrosoftSampleRate = "microsoft.sample_rate",
    MsSampleRate = "_MS.sampleRate",
    MicrosoftCustomMeasurements = "microsoft.custom_measurements",
    // Set by the standard-metrics processor on the spans it counts.
    MsProcessedByMetricExtractors = "_MS.ProcessedByMetricExtractors",
    // Exceptions
    ExceptionType = sc::EXCEPTION_TYPE,
    ExceptionMessage = sc::EXCEPTION_MESSAGE,
    ExceptionStacktrace = sc::EXCEPTION_STACKTRACE,
    ExceptionEscaped = "exception.escaped",
    // Logs (MAPPING.md §4)
    MicrosoftCustomEventName = "microsoft.custom_event.name",
    EventMarker = "APPLICATION_INSIGHTS_EVENT_MARKER_ATTRIBUTE",
    AiOperationName = "ai.operation.name",
    // Availability results (MAPPING.md §4.1, §4.2)
    MicrosoftAvailabilityId = "microsoft.availability.id",
    MicrosoftAvailabilityName = "microsoft.availability.name",
    MicrosoftAvailabilityDuration = "microsoft.availability.duration",
    MicrosoftAvailabilitySuccess = "microsoft.availability.success",
    MicrosoftAvailabilityRunLocation = "microsoft.availability.runLocation",
    MicrosoftAvailabilityMessage = "microsoft.availability.message",
    // The field `tracing` users conventionally give an error (`error = %e`).
    TracingError = "error",
    // The level tracing-opentelemetry gives the span events it makes from `tracing` events.
    Level = "level",
    // Resource
    ServiceName = sc::SERVICE_NAME,
    ServiceNamespace = sc::SERVICE_NAMESPACE,
    ServiceInstanceId = sc::SERVICE_INSTANCE_ID,
    ServiceVersion = sc::SERVICE_VERSION,
    K8sPodName = sc::K8S_POD_NAME,
    K8sDeploymentName = sc::K8S_DEPLOYMENT_NAME,
    K8sReplicasetName = sc::K8S_REPLICASET_NAME,
    K8sStatefulsetName = sc::K8S_STATEFULSET_NAME,
    K8sJobName = sc::K8S_JOB_NAME,
    K8sCronjobName = sc::K8S_CRONJOB_NAME,
    K8sDaemonsetName = sc::K8S_DAEMONSET_NAME,
    DeviceId = sc::DEVICE_ID,
    DeviceModelName = sc::DEVICE_MODEL_NAME,
    DeviceManufacturer = sc::DEVICE_MANUFACTURER,
    TelemetrySdkName = sc::TELEMETRY_SDK_NAME,
    TelemetrySdkLanguage = sc::TELEMETRY_SDK_LANGUAGE,
    TelemetrySdkVersion = sc::TELEMETRY_SDK_VERSION,
}

use Key::*;

// Groups: keys with the same meaning, stable name first (MAPPING.md §2–§3).

/// HTTP method.
pub(crate) const HTTP_METHOD: &[Key] = &[HttpRequestMethod, HttpMethod];
/// HTTP status code.
pub(crate) const HTTP_STATUS_CODE: &[Key] = &[HttpResponseStatusCode, HttpStatusCode];
/// Full URL.
pub(crate) const URL_FULL: &[Key] = &[UrlFull, HttpUrl];
/// URL scheme.
pub(crate) const URL_SCHEME: &[Key] = &[UrlScheme, HttpScheme];
/// Logical name of the remote service.
pub(crate) const PEER_SERVICE: &[Key] = &[ServicePeerName, PeerService];
/// Legacy peer host.
pub(crate) const NET_PEER_HOST: &[Key] = &[NetPeerName, NetPeerIp];
/// Legacy local host name of a server.
pub(crate) const NET_HOST: &[Key] = &[HttpServerName, NetHostName];
/// User agent.
pub(crate) const USER_AGENT: &[Key] = &[UserAgentOriginal, HttpUserAgent];
/// `ai.location.ip` of a request; `microsoft.client.ip` first (MAPPING.md §2.3 R).
pub(crate) const REQUEST_LOCATION_IP: &[Key] = &[
    MicrosoftClientIp,
    ClientAddress,
    HttpClientIp,
    HttpClientAddress,
    NetPeerIp,
];
/// `ai.location.ip` of anything but a request.
pub(crate) const LOCATION_IP: &[Key] = &[MicrosoftClientIp];
/// Database system.
pub(crate) const DB_SYSTEM: &[Key] = &[DbSystemName, DbSystem];
/// Database statement, else operation (dependency `data`).
pub(crate) const DB_STATEMENT: &[Key] = &[DbQueryText, DbStatement, DbOperationName, DbOperation];
/// Database name.
pub(crate) const DB_NAME: &[Key] = &[DbNamespace, DbName];
/// Messaging destination.
pub(crate) const MESSAGING_DESTINATION: &[Key] = &[MessagingDestinationName, MessagingDestination];
/// Peer of an Azure SDK messaging span.
pub(crate) const AZURE_SDK_PEER: &[Key] = &[ServerAddress, NetPeerName, PeerAddress];
/// Destination of an Azure SDK messaging span.
pub(crate) const AZURE_SDK_DESTINATION: &[Key] = &[MessagingDestinationName, MessageBusDestination];
/// Peer of a messaging request (`source`).
pub(crate) const MESSAGING_REQUEST_PEER: &[Key] = &[ClientAddress, NetPeerName, NetPeerIp];
/// RPC system.
pub(crate) const RPC_SYSTEM: &[Key] = &[RpcSystemName, RpcSystem];
/// RPC status code.
pub(crate) const RPC_STATUS_CODE: &[Key] = &[RpcGrpcStatusCode, RpcResponseStatusCode];
/// Generative-AI provider.
pub(crate) const GEN_AI_SYSTEM: &[Key] = &[GenAiProviderName, GenAiSystem];
/// Azure resource provider namespace of an Azure SDK span.
pub(crate) const AZ_NAMESPACE: &[Key] = &[AzureResourceProviderNamespace, AzNamespace];
/// Sample rate in percent, JS/.NET key first (MAPPING.md §1.4 R).
pub(crate) const SAMPLE_RATE: &[Key] = &[MicrosoftSampleRate, MsSampleRate];
/// `ai.cloud.roleInstance` from the resource, before the host name.
pub(crate) const ROLE_INSTANCE: &[Key] = &[K8sPodName, ServiceInstanceId];
/// Kubernetes workload names, the `ai.cloud.role` fallbacks.
pub(crate) const K8S_WORKLOAD: &[Key] = &[
    K8sDeploymentName,
    K8sReplicasetName,
    K8sStatefulsetName,
    K8sJobName,
    K8sCronjobName,
    K8sDaemonsetName,
];

/// Attributes that `tracing-opentelemetry` gives every span event made from a `tracing`
/// event: its level and its target.
pub(crate) const TRACING_LEVEL: &str = "level";
/// See [`TRACING_LEVEL`].
pub(crate) const TRACING_TARGET: &str = "target";

/// Link attribute with the enqueue time of a message, in epoch milliseconds (Azure SDKs).
pub(crate) const LINK_ENQUEUED_TIME: &str = "enqueuedTime";

/// Attribute key prefixes that are never copied into properties (PY
/// `_STANDARD_OPENTELEMETRY_ATTRIBUTE_PREFIXES`, MAPPING.md §3.5; `fass.` is PY's spelling).
const DROPPED_PREFIXES: [&str; 12] = [
    "http.",
    "db.",
    "message.",
    "messaging.",
    "rpc.",
    "enduser.",
    "net.",
    "peer.",
    "exception.",
    "thread.",
    "fass.",
    "code.",
];

/// Attribute keys that are never copied into properties: PY's list (MAPPING.md §3.5), plus the
/// keys this crate consumes beyond PY (`microsoft.sample_rate`, §1.4 R; `microsoft.client.ip`,
/// §2.3 R; `service.peer.name`, the stable `peer.service`).
const DROPPED_KEYS: [&str; 26] = [
    "session.id",
    "_MS.ProcessedByMetricExtractors",
    "_MS.sampleRate",
    "microsoft.sample_rate",
    "microsoft.custom_measurements",
    "microsoft.client.ip",
    "client.address",
    "client.port",
    "server.address",
    "server.port",
    "url.full",
    "url.path",
    "url.query",
    "url.scheme",
    "url.template",
    "error.type",
    "network.local.address",
    "network.local.port",
    "network.protocol.name",
    "network.peer.address",
    "network.peer.port",
    "network.protocol.version",
    "network.transport",
    "user_agent.original",
    "user_agent.synthetic.type",
    "service.peer.name",
];

const fn bytes_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

const fn starts_with(s: &[u8], prefix: &[u8]) -> bool {
    if s.len() < prefix.len() {
        return false;
    }
    let mut i = 0;
    while i < prefix.len() {
        if s[i] != prefix[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// Whether an attribute is a standard one that is consumed or dropped rather than copied into
/// `properties` (MAPPING.md §3.5).
pub(crate) const fn is_standard_attribute(key: &str) -> bool {
    let key = key.as_bytes();
    let mut i = 0;
    while i < DROPPED_PREFIXES.len() {
        if starts_with(key, DROPPED_PREFIXES[i].as_bytes()) {
            return true;
        }
        i += 1;
    }
    let mut i = 0;
    while i < DROPPED_KEYS.len() {
        if bytes_eq(key, DROPPED_KEYS[i].as_bytes()) {
            return true;
        }
        i += 1;
    }
    false
}

/// For each [`Key`], whether it is copied into properties; computed at compile time from the
/// same rule as for any other key, so the two can never disagree.
const IS_PROPERTY: [bool; COUNT] = {
    let mut out = [false; COUNT];
    let mut i = 0;
    while i < COUNT {
        out[i] = !is_standard_attribute(Key::ALL[i].as_str());
        i += 1;
    }
    out
};

impl Key {
    /// Whether this attribute is copied into properties (see [`is_standard_attribute`]).
    pub(crate) fn is_property(self) -> bool {
        IS_PROPERTY.get(self as usize).copied().unwrap_or(false)
    }
}

/// The first of `keys` that is present in `attrs` with a non-empty value (the last occurrence
/// of a repeated key wins), by a linear scan per key: the reference [`Known`] is tested against.
#[cfg(test)]
pub(crate) fn first_of<'v>(attrs: &'v [KeyValue], keys: &[Key]) -> Option<&'v Value> {
    keys.iter().find_map(|key| {
        let key = key.as_str();
        attrs
            .iter()
            .rev()
            .find(|kv| kv.key.as_str() == key)
            .map(|kv| &kv.value)
            .filter(|v| !is_empty_value(v))
    })
}

/// The attributes of one item that the conversion reads, found with a single pass.
#[derive(Clone, Debug)]
pub(crate) struct Known<'a> {
    slots: [Option<&'a Value>; COUNT],
}

impl<'a> Known<'a> {
    /// Reads `attrs` once: every known key goes into its slot (a repeated key: the last one
    /// wins), and, when `properties` is given, every attribute that is not a standard one
    /// (see [`is_standard_attribute`]) is added to it, borrowed where possible.
    pub(crate) fn scan(
        attrs: impl IntoIterator<Item = &'a KeyValue>,
        mut properties: Option<&mut Properties<'a>>,
    ) -> Self {
        let mut slots = [None; COUNT];
        for kv in attrs {
            let key = kv.key.as_str();
            let is_property = match Key::lookup(key) {
                Some(k) => {
                    if let Some(slot) = slots.get_mut(k as usize) {
                        *slot = Some(&kv.value);
                    }
                    k.is_property()
                }
                None => !is_standard_attribute(key),
            };
            if is_property {
                if let Some(props) = properties.as_deref_mut() {
                    insert_property(props, key, &kv.value);
                }
            }
        }
        Known { slots }
    }

    /// The value of `key`, if present (even if empty).
    pub(crate) fn get(&self, key: Key) -> Option<&'a Value> {
        self.slots.get(key as usize).copied().flatten()
    }

    /// Whether `key` is present.
    pub(crate) fn has(&self, key: Key) -> bool {
        self.get(key).is_some()
    }

    /// The first of `keys` with a non-empty value.
    pub(crate) fn first(&self, keys: &[Key]) -> Option<&'a Value> {
        keys.iter()
            .filter_map(|k| self.get(*k))
            .find(|v| !is_empty_value(v))
    }

    /// The first of `keys` with a non-empty value, rendered as text (§10.3).
    pub(crate) fn text(&self, keys: &[Key]) -> Option<Cow<'a, str>> {
        self.first(keys).map(render)
    }

    /// The first of `keys` with a non-empty string value; other types are skipped.
    pub(crate) fn str(&self, keys: &[Key]) -> Option<&'a str> {
        keys.iter().find_map(|k| match self.get(*k) {
            Some(Value::String(s)) if !s.as_str().is_empty() => Some(s.as_str()),
            _ => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_round_trips_and_is_unique() {
        for (i, k) in Key::ALL.iter().enumerate() {
            assert_eq!(*k as usize, i);
            assert_eq!(Key::lookup(k.as_str()), Some(*k), "{}", k.as_str());
        }
        let mut names: Vec<&str> = Key::ALL.iter().map(|k| k.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), COUNT);
        assert_eq!(Key::lookup("no.such.key"), None);
    }

    #[test]
    fn standard_attributes() {
        for key in [
            "http.method",
            "db.anything",
            "peer.address",
            "exception.escaped",
            "session.id",
            "_MS.sampleRate",
            "microsoft.sample_rate",
            "url.full",
            "service.peer.name",
            "fass.x",
            "_MS.ProcessedByMetricExtractors",
        ] {
            assert!(is_standard_attribute(key), "{key}");
        }
        for key in [
            "az.namespace",
            "message_bus.destination",
            "gen_ai.system",
            "session.previous_id",
            "url.domain",
            "",
            "http",
            "faas.trigger",
        ] {
            assert!(!is_standard_attribute(key), "{key}");
        }
        assert!(AzNamespace.is_property());
        assert!(GenAiSystem.is_property());
        assert!(ServiceName.is_property());
        assert!(!HttpMethod.is_property());
        assert!(!MicrosoftClientIp.is_property());
        assert!(!SessionId.is_property());
        assert!(!ServicePeerName.is_property());
    }

    #[test]
    fn scan_keeps_the_last_value_and_filters_properties() {
        let attrs = vec![
            KeyValue::new("http.method", "GET"),
            KeyValue::new("http.method", "POST"),
            KeyValue::new("custom", "x"),
            KeyValue::new("server.address", ""),
            KeyValue::new("net.peer.name", "peer"),
            KeyValue::new("gen_ai.system", "openai"),
        ];
        let mut props = Properties::default();
        let k = Known::scan(&attrs, Some(&mut props));
        assert_eq!(k.str(HTTP_METHOD), Some("POST"));
        assert!(k.has(ServerAddress));
        assert_eq!(k.str(AZURE_SDK_PEER), Some("peer"));
        assert_eq!(props.len(), 2);
        assert_eq!(props.get("custom"), Some("x"));
        assert_eq!(props.get("gen_ai.system"), Some("openai"));
        assert_eq!(
            first_of(&attrs, AZURE_SDK_PEER).map(render).as_deref(),
            Some("peer")
        );
        assert_eq!(
            first_of(&attrs, HTTP_METHOD).map(render).as_deref(),
            Some("POST")
        );
    }
}
