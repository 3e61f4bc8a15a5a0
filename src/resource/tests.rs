#![allow(clippy::unwrap_used)]

use super::*;
use std::collections::HashMap;

fn env_of(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    move |name: &str| map.get(name).filter(|v| !v.is_empty()).cloned()
}

fn no_file(_: &Path) -> Option<String> {
    None
}

/// The attributes as sorted `key=value` lines.
fn lines(attrs: &[KeyValue]) -> Vec<String> {
    let mut v: Vec<String> = attrs
        .iter()
        .map(|kv| format!("{}={}", kv.key, kv.value))
        .collect();
    v.sort();
    v
}

const APP_SERVICE_ENV: &[(&str, &str)] = &[
    ("WEBSITE_SITE_NAME", "shop"),
    ("WEBSITE_RESOURCE_GROUP", "rg"),
    ("WEBSITE_OWNER_NAME", "sub-1+rg-westeuropewebspace"),
    ("REGION_NAME", "West Europe"),
    ("WEBSITE_SLOT_NAME", "staging"),
    ("WEBSITE_HOSTNAME", "shop.azurewebsites.net"),
    ("WEBSITE_INSTANCE_ID", "inst-1"),
    ("WEBSITE_HOME_STAMPNAME", "waws-prod-am2-001"),
];

#[test]
fn app_service_table() {
    let got = lines(&azure(&env_of(APP_SERVICE_ENV), &no_file, 7));
    assert_eq!(
        got,
        [
            "azure.app.service.stamp=waws-prod-am2-001",
            "cloud.platform=azure.app_service",
            "cloud.provider=azure",
            "cloud.region=West Europe",
            "cloud.resource_id=/subscriptions/sub-1/resourceGroups/rg/providers/Microsoft.Web/sites/shop",
            "deployment.environment.name=staging",
            "host.id=shop.azurewebsites.net",
            "service.instance.id=inst-1",
            "service.name=shop",
        ]
    );
    assert_eq!(app_service(&env_of(APP_SERVICE_ENV)).len(), got.len());
    // No resource id without all of its parts.
    let partial = env_of(&[("WEBSITE_SITE_NAME", "shop"), ("WEBSITE_OWNER_NAME", "s+x")]);
    assert_eq!(
        lines(&app_service(&partial)),
        [
            "cloud.platform=azure.app_service",
            "cloud.provider=azure",
            "service.name=shop"
        ]
    );
}

#[test]
fn functions_table() {
    let table: &[(&[(&str, &str)], bool)] = &[
        (&[("FUNCTIONS_WORKER_RUNTIME", "Custom")], true),
        (&[("FUNCTIONS_CUSTOMHANDLER_PORT", "7071")], true),
        (
            &[
                ("WEBSITE_SITE_NAME", "f"),
                ("FUNCTIONS_EXTENSION_VERSION", "~4"),
            ],
            true,
        ),
        (
            &[
                ("WEBSITE_SITE_NAME", "f"),
                ("WEBSITE_SKU", "FlexConsumption"),
            ],
            true,
        ),
        (
            &[("WEBSITE_SITE_NAME", "f"), ("WEBSITE_SKU", "Dynamic")],
            false,
        ),
        (&[("FUNCTIONS_EXTENSION_VERSION", "~4")], false),
        (&[], false),
    ];
    for (vars, want) in table {
        assert_eq!(is_functions(&env_of(vars)), *want, "{vars:?}");
        assert_eq!(!functions(&env_of(vars), 1).is_empty(), *want, "{vars:?}");
    }
    let mut vars = APP_SERVICE_ENV.to_vec();
    vars.extend([
        ("FUNCTIONS_WORKER_RUNTIME", "Custom"),
        ("WEBSITE_MEMORY_LIMIT_MB", "1536"),
    ]);
    let got = lines(&azure(&env_of(&vars), &no_file, 4242));
    assert_eq!(
        got,
        [
            "cloud.platform=azure.functions",
            "cloud.provider=azure",
            "cloud.region=West Europe",
            "cloud.resource_id=/subscriptions/sub-1/resourceGroups/rg/providers/Microsoft.Web/sites/shop",
            "faas.instance=inst-1",
            "faas.max_memory=1536",
            "process.pid=4242",
            "service.instance.id=inst-1",
            "service.name=shop",
        ]
    );
    // On Functions, not App Service.
    assert!(app_service(&env_of(&vars)).is_empty());
}

const CONTAINER_APPS_ENV: &[(&str, &str)] = &[
    ("CONTAINER_APP_NAME", "orders"),
    ("CONTAINER_APP_REVISION", "orders--r1"),
    (
        "CONTAINER_APP_HOSTNAME",
        "orders--r1.example.azurecontainerapps.io",
    ),
    (
        "CONTAINER_APP_ENV_DNS_SUFFIX",
        "example.azurecontainerapps.io",
    ),
    ("CONTAINER_APP_PORT", "8080"),
    ("CONTAINER_APP_REPLICA_NAME", "orders--r1-5d8f9-abcde"),
];

#[test]
fn container_apps_table() {
    assert_eq!(
        lines(&azure(&env_of(CONTAINER_APPS_ENV), &no_file, 1)),
        [
            "azure.container_app.instance.id=orders--r1-5d8f9-abcde",
            "azure.container_app.name=orders",
            "azure.container_app.version=orders--r1",
            "cloud.platform=azure.container_apps",
            "cloud.provider=azure",
            "host.name=orders--r1.example.azurecontainerapps.io",
            "service.name=orders",
        ]
    );
    // All six variables are needed.
    for skip in 0..CONTAINER_APPS_ENV.len() {
        let mut vars = CONTAINER_APPS_ENV.to_vec();
        vars.remove(skip);
        assert!(container_apps(&env_of(&vars)).is_empty());
    }
}

const CLUSTER: &str = "/subscriptions/sub-9/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/prod-aks";

#[test]
fn aks_from_the_environment_or_the_metadata_file() {
    let want = [
        "cloud.account.id=sub-9".to_owned(),
        "cloud.platform=azure.aks".to_owned(),
        "cloud.provider=azure".to_owned(),
        format!("cloud.resource_id={CLUSTER}"),
        "k8s.cluster.name=prod-aks".to_owned(),
    ];
    let env = env_of(&[("CLUSTER_RESOURCE_ID", CLUSTER)]);
    assert_eq!(lines(&azure(&env, &no_file, 1)), want);
    let empty = env_of(&[]);
    for file in [
        format!("\u{feff}# cluster metadata\n\nclusterResourceId={CLUSTER}\n"),
        format!("{CLUSTER}\n"),
        format!("other=1\nclusterResourceId = {CLUSTER}"),
    ] {
        let read = |p: &Path| (p == Path::new(AKS_METADATA_PATH)).then(|| file.clone());
        assert_eq!(lines(&aks(&empty, &read)), want, "{file:?}");
    }
    // A directory with a file per key.
    let read = |p: &Path| {
        (p == Path::new(AKS_METADATA_PATH).join("clusterResourceId")).then(|| CLUSTER.to_owned())
    };
    assert_eq!(lines(&aks(&empty, &read)), want);
    // Nothing found, or an empty id: not AKS.
    assert!(aks(&empty, &no_file).is_empty());
    let read = |_: &Path| Some("# nothing\nclusterResourceId=\n".to_owned());
    assert!(aks(&empty, &read).is_empty());
    // An id that is not a managed cluster's: the last segment names it.
    let env = env_of(&[("CLUSTER_RESOURCE_ID", "/subscriptions/s/x/y/other-cluster")]);
    let got = lines(&aks(&env, &no_file));
    assert!(
        got.contains(&"k8s.cluster.name=other-cluster".to_owned()),
        "{got:?}"
    );
}

#[test]
fn aks_and_app_platform_attributes_merge() {
    let mut vars = CONTAINER_APPS_ENV.to_vec();
    vars.push(("CLUSTER_RESOURCE_ID", CLUSTER));
    let got = lines(&azure(&env_of(&vars), &no_file, 1));
    // The application platform's values win where both set a key.
    assert!(got.contains(&"cloud.platform=azure.container_apps".to_owned()));
    assert!(got.contains(&"k8s.cluster.name=prod-aks".to_owned()));
    assert_eq!(
        got.iter()
            .filter(|l| l.starts_with("cloud.platform="))
            .count(),
        1
    );
}

#[test]
fn nothing_off_azure() {
    assert!(azure(&env_of(&[("HOSTNAME", "laptop")]), &no_file, 1).is_empty());
}

#[test]
fn keys_the_user_set_through_the_environment_are_left_out() {
    let mut vars = APP_SERVICE_ENV.to_vec();
    vars.push(("OTEL_SERVICE_NAME", "checkout"));
    let got = lines(&azure(&env_of(&vars), &no_file, 1));
    assert!(
        !got.iter().any(|l| l.starts_with("service.name=")),
        "{got:?}"
    );
    assert!(got.contains(&"service.instance.id=inst-1".to_owned()));
    let mut vars = APP_SERVICE_ENV.to_vec();
    vars.push((
        "OTEL_RESOURCE_ATTRIBUTES",
        "service.name=checkout, service.instance.id=i9,deployment.environment.name=prod",
    ));
    let got = lines(&azure(&env_of(&vars), &no_file, 1));
    for key in [
        "service.name=",
        "service.instance.id=",
        "deployment.environment.name=",
    ] {
        assert!(!got.iter().any(|l| l.starts_with(key)), "{key} {got:?}");
    }
    assert!(got.contains(&"cloud.platform=azure.app_service".to_owned()));
}

/// The role and instance the exporters send for the detected resource, built as a user would:
/// the SDK's defaults first, then the detector, then the user's own attributes.
fn role_and_instance(attrs: Vec<KeyValue>, user: Option<&str>, host: &str) -> (String, String) {
    let mut builder = Resource::builder_empty()
        .with_attribute(KeyValue::new("service.name", "unknown_service:handler"))
        .with_attributes(attrs);
    if let Some(name) = user {
        builder = builder.with_service_name(name.to_owned());
    }
    let resource = builder.build();
    let host = host.to_owned();
    let tags = crate::convert::tags::shared_tags_with(&resource, &|_| None, &|| Some(host.clone()));
    (
        tags.get("ai.cloud.role").unwrap_or_default().to_owned(),
        tags.get("ai.cloud.roleInstance")
            .unwrap_or_default()
            .to_owned(),
    )
}

#[test]
fn role_and_instance_per_platform() {
    let mut functions_env = APP_SERVICE_ENV.to_vec();
    functions_env.push(("FUNCTIONS_WORKER_RUNTIME", "Custom"));
    let table: Vec<(&str, Vec<KeyValue>, (&str, &str))> = vec![
        (
            "app service",
            azure(&env_of(APP_SERVICE_ENV), &no_file, 1),
            ("shop", "inst-1"),
        ),
        (
            "functions",
            azure(&env_of(&functions_env), &no_file, 1),
            ("shop", "inst-1"),
        ),
        (
            "container apps",
            azure(&env_of(CONTAINER_APPS_ENV), &no_file, 1),
            ("orders", "the-host"),
        ),
        (
            "aks",
            azure(&env_of(&[("CLUSTER_RESOURCE_ID", CLUSTER)]), &no_file, 1),
            ("unknown_service:handler", "the-host"),
        ),
    ];
    for (platform, attrs, (role, instance)) in table {
        let got = role_and_instance(attrs.clone(), None, "the-host");
        assert_eq!(got, (role.to_owned(), instance.to_owned()), "{platform}");
        // A service name of the user's, set after the detector, wins; the instance stays.
        let got = role_and_instance(attrs, Some("mine"), "the-host");
        assert_eq!(got, ("mine".to_owned(), instance.to_owned()), "{platform}");
    }
}

#[test]
fn the_detectors_read_the_process_environment() {
    // Off Azure (as in CI) the environment-only detectors find nothing; on a developer's
    // machine with such variables set they would, so only check that they do not panic and
    // agree with the combined detector.
    let combined = AzureResourceDetector::new().detect();
    let parts = [
        AppServiceResourceDetector::new().detect(),
        FunctionsResourceDetector::new().detect(),
        ContainerAppsResourceDetector::new().detect(),
        AksResourceDetector::new().detect(),
    ];
    for part in &parts {
        for (k, _) in part.iter() {
            assert!(combined.get(k).is_some(), "{k}");
        }
    }
}
