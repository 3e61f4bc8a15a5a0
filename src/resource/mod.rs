//! Azure host detection: [`ResourceDetector`]s that describe where the process runs, so that
//! its cloud role and role instance appear in the Application Map without code.
//!
//! | detector | runs on | reads |
//! |---|---|---|
//! | [`AzureResourceDetector`] | any of the four below | all of their variables |
//! | [`AppServiceResourceDetector`] | App Service (Web Apps) | the environment |
//! | [`FunctionsResourceDetector`] | Azure Functions (custom handlers too) | the environment |
//! | [`ContainerAppsResourceDetector`] | Azure Container Apps | the environment |
//! | [`AksResourceDetector`] | AKS | the environment and `/etc/kubernetes/aks-cluster-metadata` |
//! | [`AzureVmResourceDetector`] | Azure VMs and scale sets | the instance metadata service (IMDS), opt-in |
//!
//! Put them **first**, so that what you configure yourself wins: the SDK's builder lets later
//! detectors and attributes override earlier ones.
//!
//! ```
//! use opentelemetry_azure_monitor::resource::AzureResourceDetector;
//! use opentelemetry_sdk::Resource;
//!
//! let resource = Resource::builder()
//!     .with_detector(Box::new(AzureResourceDetector::new()))
//!     // .with_service_name("checkout")   // your own attributes, after the detector, win
//!     .build();
//! ```
//!
//! A detector never overrides an attribute that the user set through the environment
//! (`OTEL_SERVICE_NAME`, or `OTEL_RESOURCE_ATTRIBUTES`): `Resource::builder()` reads those before
//! the detectors run, so the detectors leave such keys out. The role and instance then follow the
//! user's `service.name` and `service.instance.id`.
//!
//! # From the resource to the role and instance
//!
//! The exporters set `ai.cloud.role` from `service.namespace` and `service.name` and
//! `ai.cloud.roleInstance` from `k8s.pod.name`, else `service.instance.id`, else the host name
//! (see the README's mapping section). The detectors set those attributes as follows:
//!
//! | platform | `service.name` (role) | `service.instance.id` (instance) |
//! |---|---|---|
//! | App Service | `WEBSITE_SITE_NAME` | `WEBSITE_INSTANCE_ID` |
//! | Functions | `WEBSITE_SITE_NAME` | `WEBSITE_INSTANCE_ID` (¹) |
//! | Container Apps | `CONTAINER_APP_NAME` (²) | not set: the host name, which is the replica's |
//! | AKS | not set: the Kubernetes workload attributes, if present | not set: `k8s.pod.name` or the host name |
//! | VM (IMDS) | not set | `vmId` (as the Python detector) |
//!
//! (¹) The JavaScript Functions detector sets only `faas.instance`, so that its instance is the
//! host name; the Python distro's App Service detector, which also runs on Functions, sets
//! `service.instance.id` from `WEBSITE_INSTANCE_ID`. We follow the Python result: the instance
//! the Functions host itself reports.
//!
//! (²) The official Container Apps detector (JavaScript only) sets no `service.name`, which leaves
//! the role `unknown_service:…`. We set it to the app's name, so that the Application Map shows
//! the app without code; set `service.name` yourself to override it.

mod vm;

use std::path::Path;

use opentelemetry::KeyValue;
use opentelemetry_sdk::resource::ResourceDetector;
use opentelemetry_sdk::Resource;

pub use vm::AzureVmResourceDetector;

/// A lookup of an environment variable, `None` when it is unset or empty.
type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The process environment, empty values as unset.
fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// The AKS cluster metadata mounted from the `kube-public/aks-cluster-metadata` ConfigMap.
const AKS_METADATA_PATH: &str = "/etc/kubernetes/aks-cluster-metadata";

/// Attribute keys and values the detectors write.
mod key {
    pub(super) const SERVICE_NAME: &str = "service.name";
    pub(super) const SERVICE_INSTANCE_ID: &str = "service.instance.id";
    pub(super) const CLOUD_PROVIDER: &str = "cloud.provider";
    pub(super) const CLOUD_PLATFORM: &str = "cloud.platform";
    pub(super) const CLOUD_REGION: &str = "cloud.region";
    pub(super) const CLOUD_RESOURCE_ID: &str = "cloud.resource_id";
    pub(super) const CLOUD_ACCOUNT_ID: &str = "cloud.account.id";
    pub(super) const DEPLOYMENT_ENVIRONMENT_NAME: &str = "deployment.environment.name";
    pub(super) const HOST_ID: &str = "host.id";
    pub(super) const HOST_NAME: &str = "host.name";
    pub(super) const HOST_TYPE: &str = "host.type";
    pub(super) const OS_TYPE: &str = "os.type";
    pub(super) const OS_VERSION: &str = "os.version";
    pub(super) const PROCESS_PID: &str = "process.pid";
    pub(super) const FAAS_INSTANCE: &str = "faas.instance";
    pub(super) const FAAS_MAX_MEMORY: &str = "faas.max_memory";
    pub(super) const K8S_CLUSTER_NAME: &str = "k8s.cluster.name";
    pub(super) const APP_SERVICE_STAMP: &str = "azure.app.service.stamp";
    pub(super) const CONTAINER_APP_NAME: &str = "azure.container_app.name";
    pub(super) const CONTAINER_APP_INSTANCE: &str = "azure.container_app.instance.id";
    pub(super) const CONTAINER_APP_VERSION: &str = "azure.container_app.version";
    pub(super) const VM_SCALESET_NAME: &str = "azure.vm.scaleset.name";
    pub(super) const VM_SKU: &str = "azure.vm.sku";

    pub(super) const AZURE: &str = "azure";
    // The current semantic-convention values (the Python detectors still send the old
    // `azure_app_service` style for some of them; the JavaScript ones send these).
    pub(super) const APP_SERVICE: &str = "azure.app_service";
    pub(super) const FUNCTIONS: &str = "azure.functions";
    pub(super) const CONTAINER_APPS: &str = "azure.container_apps";
    pub(super) const AKS: &str = "azure.aks";
    pub(super) const VM: &str = "azure.vm";
}

/// Attributes under construction: empty values and keys the user set through the environment
/// are left out.
struct Attributes<'e> {
    env: Env<'e>,
    user_keys: Vec<String>,
    out: Vec<KeyValue>,
}

impl<'e> Attributes<'e> {
    fn new(env: Env<'e>) -> Self {
        Attributes {
            env,
            user_keys: user_set_keys(env),
            out: Vec::new(),
        }
    }

    fn put(&mut self, key: &'static str, value: impl Into<String>) {
        let value = value.into();
        if value.is_empty() || self.user_keys.iter().any(|k| k == key) {
            return;
        }
        self.out.retain(|kv| kv.key.as_str() != key);
        self.out.push(KeyValue::new(key, value));
    }

    fn put_i64(&mut self, key: &'static str, value: i64) {
        if self.user_keys.iter().any(|k| k == key) {
            return;
        }
        self.out.retain(|kv| kv.key.as_str() != key);
        self.out.push(KeyValue::new(key, value));
    }

    /// Puts the value of the environment variable `var`, if it is set.
    fn put_env(&mut self, key: &'static str, var: &str) {
        if let Some(v) = (self.env)(var) {
            self.put(key, v);
        }
    }
}

/// The keys the user set through `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES`
/// (`key=value,…`, as the SDK parses it).
fn user_set_keys(env: Env<'_>) -> Vec<String> {
    let mut keys = Vec::new();
    if env("OTEL_SERVICE_NAME").is_some() {
        keys.push(key::SERVICE_NAME.to_owned());
    }
    if let Some(attrs) = env("OTEL_RESOURCE_ATTRIBUTES") {
        keys.extend(
            attrs
                .split_terminator(',')
                .filter_map(|entry| entry.split_once('='))
                .map(|(k, _)| k.trim().to_owned()),
        );
    }
    keys
}

/// `/subscriptions/{sub}/resourceGroups/{WEBSITE_RESOURCE_GROUP}/providers/Microsoft.Web/sites/{WEBSITE_SITE_NAME}`,
/// where `sub` is `WEBSITE_OWNER_NAME` up to its first `+`; `None` unless all three are set
/// (as the Python detector).
fn website_resource_id(env: Env<'_>) -> Option<String> {
    let site = env("WEBSITE_SITE_NAME")?;
    let group = env("WEBSITE_RESOURCE_GROUP")?;
    let owner = env("WEBSITE_OWNER_NAME")?;
    let subscription = owner.split('+').next().filter(|s| !s.is_empty())?;
    Some(format!(
        "/subscriptions/{subscription}/resourceGroups/{group}/providers/Microsoft.Web/sites/{site}"
    ))
}

/// Whether the process runs in Azure Functions: `FUNCTIONS_WORKER_RUNTIME` is set (Python
/// detector; `Custom` for a custom handler), or `WEBSITE_SITE_NAME` with
/// `FUNCTIONS_EXTENSION_VERSION` or `WEBSITE_SKU=FlexConsumption` (JavaScript detector), or
/// `FUNCTIONS_CUSTOMHANDLER_PORT` is set (ours: only the Functions host sets it, for the
/// custom handler it starts).
fn is_functions(env: Env<'_>) -> bool {
    env("FUNCTIONS_WORKER_RUNTIME").is_some()
        || env("FUNCTIONS_CUSTOMHANDLER_PORT").is_some()
        || (env("WEBSITE_SITE_NAME").is_some()
            && (env("FUNCTIONS_EXTENSION_VERSION").is_some()
                || env("WEBSITE_SKU").as_deref() == Some("FlexConsumption")))
}

/// The variables that must all be set for Container Apps (JavaScript detector).
const CONTAINER_APP_VARS: [&str; 6] = [
    "CONTAINER_APP_NAME",
    "CONTAINER_APP_REVISION",
    "CONTAINER_APP_HOSTNAME",
    "CONTAINER_APP_ENV_DNS_SUFFIX",
    "CONTAINER_APP_PORT",
    "CONTAINER_APP_REPLICA_NAME",
];

fn is_container_apps(env: Env<'_>) -> bool {
    CONTAINER_APP_VARS.iter().all(|v| env(v).is_some())
}

fn is_app_service(env: Env<'_>) -> bool {
    env("WEBSITE_SITE_NAME").is_some() && !is_functions(env) && !is_container_apps(env)
}

/// App Service attributes, or an empty list when not on App Service.
fn app_service(env: Env<'_>) -> Vec<KeyValue> {
    if !is_app_service(env) {
        return Vec::new();
    }
    let mut a = Attributes::new(env);
    a.put_env(key::SERVICE_NAME, "WEBSITE_SITE_NAME");
    a.put(key::CLOUD_PROVIDER, key::AZURE);
    a.put(key::CLOUD_PLATFORM, key::APP_SERVICE);
    if let Some(id) = website_resource_id(env) {
        a.put(key::CLOUD_RESOURCE_ID, id);
    }
    a.put_env(key::CLOUD_REGION, "REGION_NAME");
    a.put_env(key::DEPLOYMENT_ENVIRONMENT_NAME, "WEBSITE_SLOT_NAME");
    a.put_env(key::HOST_ID, "WEBSITE_HOSTNAME");
    a.put_env(key::SERVICE_INSTANCE_ID, "WEBSITE_INSTANCE_ID");
    a.put_env(key::APP_SERVICE_STAMP, "WEBSITE_HOME_STAMPNAME");
    a.out
}

/// Functions attributes, or an empty list when not on Functions.
fn functions(env: Env<'_>, pid: u32) -> Vec<KeyValue> {
    if !is_functions(env) {
        return Vec::new();
    }
    let mut a = Attributes::new(env);
    a.put_env(key::SERVICE_NAME, "WEBSITE_SITE_NAME");
    a.put(key::CLOUD_PROVIDER, key::AZURE);
    a.put(key::CLOUD_PLATFORM, key::FUNCTIONS);
    a.put_env(key::CLOUD_REGION, "REGION_NAME");
    if let Some(id) = website_resource_id(env) {
        a.put(key::CLOUD_RESOURCE_ID, id);
    }
    a.put_i64(key::PROCESS_PID, i64::from(pid));
    a.put_env(key::FAAS_INSTANCE, "WEBSITE_INSTANCE_ID");
    a.put_env(key::SERVICE_INSTANCE_ID, "WEBSITE_INSTANCE_ID");
    if let Some(mb) = env("WEBSITE_MEMORY_LIMIT_MB").and_then(|v| v.trim().parse::<i64>().ok()) {
        a.put_i64(key::FAAS_MAX_MEMORY, mb);
    }
    a.out
}

/// Container Apps attributes, or an empty list when not on Container Apps.
fn container_apps(env: Env<'_>) -> Vec<KeyValue> {
    if !is_container_apps(env) {
        return Vec::new();
    }
    let mut a = Attributes::new(env);
    a.put_env(key::SERVICE_NAME, "CONTAINER_APP_NAME");
    a.put(key::CLOUD_PROVIDER, key::AZURE);
    a.put(key::CLOUD_PLATFORM, key::CONTAINER_APPS);
    a.put_env(key::HOST_NAME, "CONTAINER_APP_HOSTNAME");
    a.put_env(key::CONTAINER_APP_INSTANCE, "CONTAINER_APP_REPLICA_NAME");
    a.put_env(key::CONTAINER_APP_NAME, "CONTAINER_APP_NAME");
    a.put_env(key::CONTAINER_APP_VERSION, "CONTAINER_APP_REVISION");
    a.out
}

/// The AKS cluster's resource id: `CLUSTER_RESOURCE_ID`, else the metadata at `path`, a file
/// holding `clusterResourceId=<id>` or the bare id, or a directory with a file
/// `clusterResourceId`. A byte-order mark, blank lines and `#` comments are skipped.
fn aks_resource_id(env: Env<'_>, read: &dyn Fn(&Path) -> Option<String>) -> Option<String> {
    if let Some(id) = env("CLUSTER_RESOURCE_ID") {
        return Some(id.trim().to_owned()).filter(|id| !id.is_empty());
    }
    let path = Path::new(AKS_METADATA_PATH);
    let text = read(path).or_else(|| read(&path.join("clusterResourceId")))?;
    text.trim_start_matches('\u{feff}')
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .find_map(|line| match line.split_once('=') {
            Some((k, v)) if k.trim() == "clusterResourceId" => Some(v.trim().to_owned()),
            Some(_) => None,
            None => Some(line.to_owned()),
        })
        .filter(|id| !id.is_empty())
}

/// The path segment after `name` (case-insensitive) in an ARM resource id.
fn segment_after<'a>(id: &'a str, name: &str) -> Option<&'a str> {
    let mut parts = id.split('/');
    parts.find(|p| p.eq_ignore_ascii_case(name))?;
    parts.next().filter(|p| !p.is_empty())
}

/// AKS attributes, or an empty list when no cluster resource id is found.
fn aks(env: Env<'_>, read: &dyn Fn(&Path) -> Option<String>) -> Vec<KeyValue> {
    let Some(id) = aks_resource_id(env, read) else {
        return Vec::new();
    };
    let mut a = Attributes::new(env);
    a.put(key::CLOUD_PROVIDER, key::AZURE);
    a.put(key::CLOUD_PLATFORM, key::AKS);
    if let Some(sub) = segment_after(&id, "subscriptions") {
        a.put(key::CLOUD_ACCOUNT_ID, sub);
    }
    let cluster = segment_after(&id, "managedClusters")
        .or_else(|| id.rsplit('/').find(|p| !p.is_empty()))
        .map(str::to_owned);
    if let Some(cluster) = cluster {
        a.put(key::K8S_CLUSTER_NAME, cluster);
    }
    a.put(key::CLOUD_RESOURCE_ID, id);
    a.out
}

/// Whether any of the environment-based detectors finds its platform; the VM detector then
/// does not ask IMDS (on App Service, Functions and Container Apps it fails; on AKS it describes
/// the node, not the cluster).
fn on_other_platform(env: Env<'_>) -> bool {
    env("WEBSITE_SITE_NAME").is_some()
        || is_functions(env)
        || is_container_apps(env)
        || env("AKS_ARM_NAMESPACE_ID").is_some()
        || env("CLUSTER_RESOURCE_ID").is_some()
        || env("KUBERNETES_SERVICE_HOST").is_some()
}

fn read_file(path: &Path) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

/// All environment-based Azure detectors at once: AKS, then App Service, Functions or Container
/// Apps (at most one of these three applies). Does no network call; see
/// [`AzureVmResourceDetector`] for VMs.
///
/// Reads the variables listed on [`AppServiceResourceDetector`], [`FunctionsResourceDetector`],
/// [`ContainerAppsResourceDetector`] and [`AksResourceDetector`], and `OTEL_SERVICE_NAME` and
/// `OTEL_RESOURCE_ATTRIBUTES` to leave out the keys the user set there.
#[derive(Clone, Copy, Debug, Default)]
pub struct AzureResourceDetector {
    _private: (),
}

impl AzureResourceDetector {
    /// The detector.
    pub fn new() -> Self {
        Self::default()
    }
}

/// [`AzureResourceDetector`]'s attributes from an environment and a file reader.
fn azure(env: Env<'_>, read: &dyn Fn(&Path) -> Option<String>, pid: u32) -> Vec<KeyValue> {
    let mut out = aks(env, read);
    for kv in app_service(env)
        .into_iter()
        .chain(functions(env, pid))
        .chain(container_apps(env))
    {
        out.retain(|old| old.key != kv.key);
        out.push(kv);
    }
    out
}

impl ResourceDetector for AzureResourceDetector {
    fn detect(&self) -> Resource {
        build(azure(&process_env, &read_file, std::process::id()))
    }
}

fn build(attributes: Vec<KeyValue>) -> Resource {
    Resource::builder_empty()
        .with_attributes(attributes)
        .build()
}

/// Azure App Service (Web Apps), detected by `WEBSITE_SITE_NAME` (and neither Functions nor
/// Container Apps).
///
/// | attribute | from |
/// |---|---|
/// | `service.name` | `WEBSITE_SITE_NAME` |
/// | `service.instance.id` | `WEBSITE_INSTANCE_ID` |
/// | `cloud.provider`, `cloud.platform` | `azure`, `azure.app_service` |
/// | `cloud.resource_id` | `/subscriptions/{WEBSITE_OWNER_NAME up to '+'}/resourceGroups/{WEBSITE_RESOURCE_GROUP}/providers/Microsoft.Web/sites/{WEBSITE_SITE_NAME}`, when all three are set |
/// | `cloud.region` | `REGION_NAME` |
/// | `deployment.environment.name` | `WEBSITE_SLOT_NAME` |
/// | `host.id` | `WEBSITE_HOSTNAME` |
/// | `azure.app.service.stamp` | `WEBSITE_HOME_STAMPNAME` |
#[derive(Clone, Copy, Debug, Default)]
pub struct AppServiceResourceDetector {
    _private: (),
}

impl AppServiceResourceDetector {
    /// The detector.
    pub fn new() -> Self {
        Self::default()
    }
}

impl ResourceDetector for AppServiceResourceDetector {
    fn detect(&self) -> Resource {
        build(app_service(&process_env))
    }
}

/// Azure Functions, custom handlers included, detected by `FUNCTIONS_WORKER_RUNTIME` (`Custom`
/// for a custom handler), by `WEBSITE_SITE_NAME` with `FUNCTIONS_EXTENSION_VERSION` or
/// `WEBSITE_SKU=FlexConsumption`, or by `FUNCTIONS_CUSTOMHANDLER_PORT` (the port the Functions
/// host gives a custom handler; not read by the official detectors).
///
/// | attribute | from |
/// |---|---|
/// | `service.name` | `WEBSITE_SITE_NAME` |
/// | `service.instance.id`, `faas.instance` | `WEBSITE_INSTANCE_ID` |
/// | `cloud.provider`, `cloud.platform` | `azure`, `azure.functions` |
/// | `cloud.region` | `REGION_NAME` |
/// | `cloud.resource_id` | as for App Service |
/// | `process.pid` | this process |
/// | `faas.max_memory` | `WEBSITE_MEMORY_LIMIT_MB` (an integer) |
#[derive(Clone, Copy, Debug, Default)]
pub struct FunctionsResourceDetector {
    _private: (),
}

impl FunctionsResourceDetector {
    /// The detector.
    pub fn new() -> Self {
        Self::default()
    }
}

impl ResourceDetector for FunctionsResourceDetector {
    fn detect(&self) -> Resource {
        build(functions(&process_env, std::process::id()))
    }
}

/// Azure Container Apps, detected when all of `CONTAINER_APP_NAME`, `CONTAINER_APP_REVISION`,
/// `CONTAINER_APP_HOSTNAME`, `CONTAINER_APP_ENV_DNS_SUFFIX`, `CONTAINER_APP_PORT` and
/// `CONTAINER_APP_REPLICA_NAME` are set.
///
/// | attribute | from |
/// |---|---|
/// | `service.name` | `CONTAINER_APP_NAME` (not in the official detector, see the [module](self) docs) |
/// | `cloud.provider`, `cloud.platform` | `azure`, `azure.container_apps` |
/// | `host.name` | `CONTAINER_APP_HOSTNAME` |
/// | `azure.container_app.instance.id` | `CONTAINER_APP_REPLICA_NAME` |
/// | `azure.container_app.name` | `CONTAINER_APP_NAME` |
/// | `azure.container_app.version` | `CONTAINER_APP_REVISION` |
#[derive(Clone, Copy, Debug, Default)]
pub struct ContainerAppsResourceDetector {
    _private: (),
}

impl ContainerAppsResourceDetector {
    /// The detector.
    pub fn new() -> Self {
        Self::default()
    }
}

impl ResourceDetector for ContainerAppsResourceDetector {
    fn detect(&self) -> Resource {
        build(container_apps(&process_env))
    }
}

/// Azure Kubernetes Service, detected by the cluster's resource id: `CLUSTER_RESOURCE_ID`, else
/// the file `/etc/kubernetes/aks-cluster-metadata` (the `kube-public/aks-cluster-metadata`
/// ConfigMap mounted as a file of `clusterResourceId=<id>` or the bare id, or as a directory
/// with a file `clusterResourceId`).
///
/// | attribute | from |
/// |---|---|
/// | `cloud.provider`, `cloud.platform` | `azure`, `azure.aks` |
/// | `cloud.resource_id` | the cluster's resource id |
/// | `cloud.account.id` | its subscription |
/// | `k8s.cluster.name` | the segment after `managedClusters/` (else the last one) |
///
/// The pod and workload attributes that name the role and instance (`k8s.pod.name`,
/// `k8s.deployment.name`, …) are not known to the process: set them through
/// `OTEL_RESOURCE_ATTRIBUTES` from the Downward API, the OpenTelemetry operator or a collector.
#[derive(Clone, Copy, Debug, Default)]
pub struct AksResourceDetector {
    _private: (),
}

impl AksResourceDetector {
    /// The detector.
    pub fn new() -> Self {
        Self::default()
    }
}

impl ResourceDetector for AksResourceDetector {
    fn detect(&self) -> Resource {
        build(aks(&process_env, &read_file))
    }
}

#[cfg(test)]
mod tests;
