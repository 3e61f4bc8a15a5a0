//! Azure VMs and scale sets, through the instance metadata service (IMDS).

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use opentelemetry::KeyValue;
use opentelemetry_sdk::resource::ResourceDetector;
use opentelemetry_sdk::Resource;
use serde::Deserialize;

use super::{build, key, on_other_platform, process_env, Attributes, Env};

/// Where IMDS answers, on every Azure VM.
const IMDS_ADDRESS: ([u8; 4], u16) = ([169, 254, 169, 254], 80);
/// The request of the official detectors (Python and JavaScript).
const IMDS_PATH: &str = "/metadata/instance/compute?api-version=2021-12-13&format=json";
/// The Python detector's timeout: IMDS answers within a few milliseconds on a VM, and off
/// Azure nothing answers at all.
const DEFAULT_TIMEOUT: Duration = Duration::from_millis(200);
/// Answers longer than this are not IMDS's (a real one is a few KiB).
const MAX_ANSWER: usize = 1 << 20;

/// Azure virtual machines and scale sets, from the instance metadata service (IMDS,
/// `GET http://169.254.169.254/metadata/instance/compute?api-version=2021-12-13&format=json`
/// with `Metadata: True`).
///
/// **Opt-in**: it is a network call at start-up, so no other part of the crate runs it. It
/// waits at most its timeout (200 ms unless set), never panics, and gives an empty resource
/// when IMDS does not answer, answers something else than metadata, or when the environment
/// shows another Azure platform (`WEBSITE_SITE_NAME`, `FUNCTIONS_WORKER_RUNTIME`, the Container
/// Apps variables, `AKS_ARM_NAMESPACE_ID`, `CLUSTER_RESOURCE_ID` or `KUBERNETES_SERVICE_HOST`),
/// where IMDS fails or describes the node rather than the service.
///
/// | attribute | IMDS field |
/// |---|---|
/// | `cloud.provider`, `cloud.platform` | `azure`, `azure.vm` |
/// | `cloud.region` | `location` |
/// | `cloud.resource_id` | `resourceId` |
/// | `host.id`, `service.instance.id` | `vmId` (`service.instance.id` as the Python detector) |
/// | `host.name` | `name` |
/// | `host.type` | `vmSize` |
/// | `os.type` | `osType` |
/// | `os.version` | `version` |
/// | `azure.vm.sku` | `sku` |
/// | `azure.vm.scaleset.name` | `vmScaleSetName` |
///
/// ```no_run
/// use opentelemetry_azure_monitor::resource::{AzureResourceDetector, AzureVmResourceDetector};
/// use opentelemetry_sdk::Resource;
///
/// let resource = Resource::builder()
///     .with_detector(Box::new(AzureResourceDetector::new()))
///     .with_detector(Box::new(AzureVmResourceDetector::new()))
///     .build();
/// ```
#[derive(Clone, Debug)]
#[must_use]
pub struct AzureVmResourceDetector {
    address: SocketAddr,
    timeout: Duration,
}

impl Default for AzureVmResourceDetector {
    fn default() -> Self {
        AzureVmResourceDetector {
            address: SocketAddr::from(IMDS_ADDRESS),
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

impl AzureVmResourceDetector {
    /// The detector, asking IMDS at its usual address.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets how long detection may take in all: connecting, asking and reading the answer.
    ///
    /// Defaults to 200 milliseconds, as the Python detector.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Asks IMDS at this address instead (plain HTTP), for tests with a fake IMDS.
    ///
    /// Defaults to `169.254.169.254:80`.
    pub fn with_address(mut self, address: SocketAddr) -> Self {
        self.address = address;
        self
    }

    /// The attributes from the environment `env` and IMDS.
    fn attributes(&self, env: Env<'_>) -> Vec<KeyValue> {
        if on_other_platform(env) {
            return Vec::new();
        }
        match self.fetch() {
            Ok(body) => match serde_json::from_slice::<Compute>(&body) {
                Ok(compute) => compute.attributes(env),
                Err(e) => {
                    opentelemetry::otel_warn!(
                        name: "AzureMonitor.Resource.ImdsInvalid",
                        message = "the Azure instance metadata service answered something that is not VM metadata; no VM attributes",
                        error = e.to_string()
                    );
                    Vec::new()
                }
            },
            Err(reason) => {
                // Off Azure, this is the normal outcome.
                opentelemetry::otel_debug!(
                    name: "AzureMonitor.Resource.ImdsUnavailable",
                    message = "the Azure instance metadata service did not answer; no VM attributes",
                    reason = reason
                );
                Vec::new()
            }
        }
    }

    /// Asks IMDS and returns the body of a 200 answer, within the timeout.
    fn fetch(&self) -> Result<Vec<u8>, String> {
        let deadline = Instant::now() + self.timeout;
        let left = || {
            deadline
                .checked_duration_since(Instant::now())
                .filter(|d| !d.is_zero())
                .ok_or_else(|| "timed out".to_owned())
        };
        let mut stream =
            TcpStream::connect_timeout(&self.address, left()?).map_err(|e| e.to_string())?;
        stream
            .set_write_timeout(Some(left()?))
            .map_err(|e| e.to_string())?;
        let request = format!(
            "GET {IMDS_PATH} HTTP/1.1\r\nHost: {}\r\nMetadata: True\r\nConnection: close\r\n\r\n",
            self.address.ip()
        );
        stream
            .write_all(request.as_bytes())
            .map_err(|e| e.to_string())?;
        let mut answer = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            stream
                .set_read_timeout(Some(left()?))
                .map_err(|e| e.to_string())?;
            match stream.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    answer.extend_from_slice(&buf[..n]);
                    if answer.len() > MAX_ANSWER {
                        return Err("answer too large".to_owned());
                    }
                    if let Some(body) = complete_body(&answer, false)? {
                        return Ok(body);
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.to_string()),
            }
        }
        complete_body(&answer, true)?.ok_or_else(|| "incomplete answer".to_owned())
    }
}

/// The body of a complete HTTP/1.1 answer with status 200 (`Content-Length`, chunked, or up
/// to the end of the connection: `eof`); `Ok(None)` while more is needed.
fn complete_body(answer: &[u8], eof: bool) -> Result<Option<Vec<u8>>, String> {
    let Some(end) = answer.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(None);
    };
    let head = std::str::from_utf8(&answer[..end]).map_err(|_| "bad header".to_owned())?;
    let body = &answer[end + 4..];
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap_or_default();
    if status.split(' ').nth(1) != Some("200") {
        return Err(format!("status line {status:?}"));
    }
    let header = |name: &str| {
        head.split("\r\n").skip(1).find_map(|line| {
            let (k, v) = line.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    };
    if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        return dechunk(body);
    }
    match header("content-length").map(str::parse::<usize>) {
        Some(Ok(n)) => Ok((body.len() >= n).then(|| body[..n].to_vec())),
        Some(Err(_)) => Err("bad content-length".to_owned()),
        None => Ok(eof.then(|| body.to_vec())),
    }
}

/// The data of a chunked body, `Ok(None)` until its last chunk arrived.
fn dechunk(mut body: &[u8]) -> Result<Option<Vec<u8>>, String> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = body.windows(2).position(|w| w == b"\r\n") else {
            return Ok(None);
        };
        let size = std::str::from_utf8(&body[..eol])
            .ok()
            .and_then(|s| usize::from_str_radix(s.split(';').next().unwrap_or("").trim(), 16).ok())
            .ok_or_else(|| "bad chunk".to_owned())?;
        if size == 0 {
            return Ok(Some(out));
        }
        let start = eol + 2;
        let Some(chunk) = body.get(start..start + size) else {
            return Ok(None);
        };
        out.extend_from_slice(chunk);
        body = body.get(start + size + 2..).unwrap_or_default();
    }
}

/// The fields of IMDS's `compute` document that the detector uses.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct Compute {
    location: String,
    name: String,
    os_type: String,
    resource_id: String,
    sku: String,
    version: String,
    vm_id: String,
    vm_scale_set_name: String,
    vm_size: String,
}

impl Compute {
    fn attributes(self, env: Env<'_>) -> Vec<KeyValue> {
        let mut a = Attributes::new(env);
        a.put(key::CLOUD_PROVIDER, key::AZURE);
        a.put(key::CLOUD_PLATFORM, key::VM);
        a.put(key::CLOUD_REGION, self.location);
        a.put(key::CLOUD_RESOURCE_ID, self.resource_id);
        a.put(key::HOST_ID, self.vm_id.clone());
        a.put(key::SERVICE_INSTANCE_ID, self.vm_id);
        a.put(key::HOST_NAME, self.name);
        a.put(key::HOST_TYPE, self.vm_size);
        a.put(key::OS_TYPE, self.os_type);
        a.put(key::OS_VERSION, self.version);
        a.put(key::VM_SKU, self.sku);
        a.put(key::VM_SCALESET_NAME, self.vm_scale_set_name);
        a.out
    }
}

impl ResourceDetector for AzureVmResourceDetector {
    fn detect(&self) -> Resource {
        build(self.attributes(&process_env))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use std::net::TcpListener;

    const BODY: &str = r#"{"location":"westeurope","name":"vm1","osType":"Linux","resourceId":"/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm1","sku":"22_04-lts-gen2","version":"22.04.202401010","vmId":"02aab8a4-74ef-476e-8182-f6d2ba4166a6","vmScaleSetName":"","vmSize":"Standard_D2s_v3"}"#;

    /// A fake IMDS that answers one connection with `answer` (after checking the request) and
    /// returns what it was asked.
    fn fake_imds(answer: String) -> (SocketAddr, std::thread::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let handle = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            while !request.ends_with(b"\r\n\r\n") {
                let n = stream.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                request.extend_from_slice(&buf[..n]);
            }
            stream.write_all(answer.as_bytes()).unwrap();
            String::from_utf8(request).unwrap()
        });
        (addr, handle)
    }

    fn get(attrs: &[KeyValue], key: &str) -> Option<String> {
        attrs
            .iter()
            .find(|kv| kv.key.as_str() == key)
            .map(|kv| kv.value.to_string())
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn reads_the_vm_metadata() {
        for answer in [
            format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{BODY}",
                BODY.len()
            ),
            format!(
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n{}\r\n{:x}\r\n{}\r\n0\r\n\r\n",
                &BODY[..16],
                BODY.len() - 16,
                &BODY[16..]
            ),
            format!("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n{BODY}"),
        ] {
            let (addr, imds) = fake_imds(answer);
            let detector = AzureVmResourceDetector::new()
                .with_address(addr)
                .with_timeout(Duration::from_secs(10));
            let attrs = detector.attributes(&no_env);
            let request = imds.join().unwrap();
            assert!(
                request.starts_with(&format!("GET {IMDS_PATH} HTTP/1.1\r\n")),
                "{request}"
            );
            assert!(request.contains("\r\nMetadata: True\r\n"), "{request}");
            let vm_id = "02aab8a4-74ef-476e-8182-f6d2ba4166a6";
            for (k, v) in [
                ("cloud.provider", "azure"),
                ("cloud.platform", "azure.vm"),
                ("cloud.region", "westeurope"),
                ("host.id", vm_id),
                ("service.instance.id", vm_id),
                ("host.name", "vm1"),
                ("host.type", "Standard_D2s_v3"),
                ("os.type", "Linux"),
                ("os.version", "22.04.202401010"),
                ("azure.vm.sku", "22_04-lts-gen2"),
            ] {
                assert_eq!(get(&attrs, k).as_deref(), Some(v), "{k}");
            }
            assert_eq!(get(&attrs, "azure.vm.scaleset.name"), None);
            assert!(get(&attrs, "cloud.resource_id")
                .unwrap()
                .ends_with("/virtualMachines/vm1"));
        }
    }

    #[test]
    fn failures_give_no_attributes_and_do_not_panic() {
        for answer in [
            "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_owned(),
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nnope!".to_owned(),
            "HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\n{}".to_owned(),
            "garbage".to_owned(),
            String::new(),
        ] {
            let (addr, imds) = fake_imds(answer);
            let detector = AzureVmResourceDetector::new()
                .with_address(addr)
                .with_timeout(Duration::from_secs(10));
            assert!(detector.attributes(&no_env).is_empty());
            imds.join().unwrap();
        }
        // Nobody listening: a closed port.
        let closed = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let detector = AzureVmResourceDetector::new().with_address(closed);
        assert!(detector.attributes(&no_env).is_empty());
    }

    #[test]
    fn a_silent_imds_gives_nothing_once_the_timeout_is_over() {
        // Accepts the connection (the backlog) but never answers.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let detector = AzureVmResourceDetector::new()
            .with_address(listener.local_addr().unwrap())
            .with_timeout(Duration::from_millis(50));
        assert!(detector.attributes(&no_env).is_empty());
        drop(listener);
    }

    #[test]
    fn other_platforms_skip_imds() {
        // The fake would answer, but is never asked.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let detector = AzureVmResourceDetector::new()
            .with_address(listener.local_addr().unwrap())
            .with_timeout(Duration::from_secs(10));
        for var in [
            "WEBSITE_SITE_NAME",
            "FUNCTIONS_WORKER_RUNTIME",
            "KUBERNETES_SERVICE_HOST",
            "AKS_ARM_NAMESPACE_ID",
        ] {
            let env = move |name: &str| (name == var).then(|| "x".to_owned());
            assert!(detector.attributes(&env).is_empty(), "{var}");
        }
        listener.set_nonblocking(true).unwrap();
        assert!(listener.accept().is_err(), "IMDS was asked");
    }

    #[test]
    fn user_keys_win() {
        let compute: Compute = serde_json::from_str(BODY).unwrap();
        let env = |name: &str| {
            (name == "OTEL_RESOURCE_ATTRIBUTES").then(|| "service.instance.id=mine".to_owned())
        };
        let attrs = compute.attributes(&env);
        assert_eq!(get(&attrs, "service.instance.id"), None);
        assert!(get(&attrs, "host.id").is_some());
    }
}
