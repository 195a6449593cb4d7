using System.Diagnostics;
using System.ComponentModel;
using System.Text.RegularExpressions;
using Hoard.Core.Configuration;
using Hoard.Tests.Infrastructure;
using k8s;
using k8s.Models;

namespace Hoard.Tests.Integration;

/// <summary>
/// deploy/kubernetes: each kustomization rendered by the real `kubectl kustomize`, read into the Kubernetes API types
/// strictly (a misspelt or misplaced field fails), then checked as a whole: what refers to what (volumes, Secrets,
/// Services, selectors, ports), the security settings, and every Hoard command line parsed by Hoard's own CLI and
/// loaded by its settings loader with the pod's mounts and variables, so a flag the manifests use must exist and
/// the values must be valid. The init container's command is run for real against a directory laid out like a
/// node's /etc/containerd.
/// </summary>
public sealed partial class KubernetesManifestTests
{
    private const string Image = "ghcr.io/OWNER/hoard:VERSION";
    private const string PodIp = "10.1.2.3";
    private const string SecretValue = "0123456789abcdef0123456789abcdef";

    [Fact]
    public async Task Node_local_runs_hoard_on_every_node_with_containerd_set_up_by_an_init_container_and_the_cluster_through_redis()
    {
        var objects = await RenderAsync("node-local");
        Assert.Equal(
            ["ConfigMap", "DaemonSet", "Deployment", "Namespace", "PodDisruptionBudget", "Service"],
            objects.Select(Kind).Order(StringComparer.Ordinal));
        AssertNamespace(objects, "hoard-node", "privileged");

        var ds = objects.OfType<V1DaemonSet>().Single();
        var pod = ds.Spec.Template.Spec;
        AssertSelects(ds.Spec.Selector, ds.Spec.Template.Metadata.Labels);
        Assert.Equal("RollingUpdate", ds.Spec.UpdateStrategy.Type);
        Assert.Equal("1", ds.Spec.UpdateStrategy.RollingUpdate.MaxUnavailable.Value);
        Assert.Equal("0", ds.Spec.UpdateStrategy.RollingUpdate.MaxSurge.Value);
        // containerd, on the host, reaches Hoard at 127.0.0.1; cluster DNS still works for the Redis Service.
        Assert.True(pod.HostNetwork);
        Assert.Equal("ClusterFirstWithHostNet", pod.DnsPolicy);
        Assert.Contains(pod.Tolerations, t => t.OperatorProperty == "Exists" && t.Key is null);

        var hoard = pod.Containers.Single();
        Assert.Equal("hoard", hoard.Name);
        var port = hoard.Ports.Single().ContainerPort;
        AssertServes(pod, hoard, port, "HTTP");
        var annotations = ds.Spec.Template.Metadata.Annotations;
        Assert.Equal("true", annotations["prometheus.io/scrape"]);
        Assert.Equal(port.ToString(System.Globalization.CultureInfo.InvariantCulture), annotations["prometheus.io/port"]);
        Assert.Equal("/metrics", annotations["prometheus.io/path"]);

        // The address the other nodes use: the pod IP (the node's, on the host network) from the downward API.
        var podIp = hoard.Env.Single(e => e.Name == "POD_IP");
        Assert.Equal("status.podIP", podIp.ValueFrom.FieldRef.FieldPath);
        Assert.Equal($"http://$(POD_IP):{port}", Flag(hoard.Args, "--advertise"));

        // The cluster secret: a file from the Secret hoard-cluster; Redis's password from the same Secret, in a variable.
        var secretFile = Flag(hoard.Args, "--cluster-secret-file")!;
        var (secretMount, secretVolume) = MountOf(pod, hoard, secretFile);
        Assert.Equal("hoard-cluster", secretVolume.Secret.SecretName);
        Assert.Equal(secretFile[(secretMount.MountPath.Length + 1)..], secretVolume.Secret.Items.Single(i => i.Key == "cluster-secret").Path);
        Assert.True(secretMount.ReadOnlyProperty);
        Assert.Equal(0x120, secretVolume.Secret.DefaultMode); // 0440: the group (fsGroup) reads it, no one writes it
        Assert.Equal(10001, pod.SecurityContext.FsGroup);
        var redisPassword = hoard.Env.Single(e => e.Name == "REDIS_PASSWORD").ValueFrom.SecretKeyRef;
        Assert.Equal(("hoard-cluster", "redis-password"), (redisPassword.Name, redisPassword.Key));
        Assert.DoesNotContain(hoard.Args, a => a.Contains("REDIS_PASSWORD", StringComparison.Ordinal) || a == "--cluster-redis" || a == "--cluster-secret");

        // Redis: a Deployment and the Service that HOARD_CLUSTER_REDIS names, with the same password.
        var redisUrl = new Uri(hoard.Env.Single(e => e.Name == "HOARD_CLUSTER_REDIS").Value);
        Assert.Equal(("redis", ":$(REDIS_PASSWORD)"), (redisUrl.Scheme, Uri.UnescapeDataString(redisUrl.UserInfo)));
        var redisService = objects.OfType<V1Service>().Single(s => s.Metadata.Name == redisUrl.Host);
        var redisServicePort = redisService.Spec.Ports.Single();
        Assert.Equal(redisUrl.Port, redisServicePort.Port);
        var redis = objects.OfType<V1Deployment>().Single(d => d.Metadata.Name == "hoard-redis");
        AssertSelects(redis.Spec.Selector, redis.Spec.Template.Metadata.Labels);
        AssertSelects(redisService.Spec.Selector, redis.Spec.Template.Metadata.Labels);
        Assert.False(Selects(redisService.Spec.Selector, ds.Spec.Template.Metadata.Labels));
        var redisContainer = redis.Spec.Template.Spec.Containers.Single();
        Assert.Equal("docker.io/library/redis:7.4-alpine", redisContainer.Image);
        Assert.Equal(redisServicePort.TargetPort.Value, redisContainer.Ports.Single().Name);
        Assert.Equal("$(REDIS_PASSWORD)", Flag(redisContainer.Args, "--requirepass"));
        var redisSecret = redisContainer.Env.Single(e => e.Name == "REDIS_PASSWORD").ValueFrom.SecretKeyRef;
        Assert.Equal(("hoard-cluster", "redis-password"), (redisSecret.Name, redisSecret.Key));
        AssertRestricted(redis.Spec.Template.Spec, redisContainer);
        AssertResources(redisContainer);
        Assert.NotNull(redisContainer.ReadinessProbe.TcpSocket);

        var pdb = objects.OfType<V1PodDisruptionBudget>().Single();
        Assert.Equal("1", pdb.Spec.MaxUnavailable.Value);
        AssertSelects(pdb.Spec.Selector, ds.Spec.Template.Metadata.Labels);
        Assert.False(Selects(pdb.Spec.Selector, redis.Spec.Template.Metadata.Labels));

        // The init container: Hoard's own command, as root, with the node's certs.d writable at the same path and
        // containerd's config read-only.
        var init = pod.InitContainers.Single();
        Assert.Equal(Image, init.Image);
        Assert.Equal(["config", "containerd"], init.Args.Take(2));
        Assert.Contains("--apply", init.Args);
        Assert.Equal($"http://127.0.0.1:{port}", Flag(init.Args, "--url"));
        AssertParses(init.Args);
        Assert.Equal(0, init.SecurityContext.RunAsUser);
        Assert.False(init.SecurityContext.AllowPrivilegeEscalation);
        Assert.Equal(["ALL"], init.SecurityContext.Capabilities.Drop);
        AssertResources(init);
        var certs = Flag(init.Args, "--path")!;
        var (certsMount, certsVolume) = MountOf(pod, init, certs);
        Assert.Equal(("/etc/containerd/certs.d", "/etc/containerd/certs.d", "DirectoryOrCreate"), (certsMount.MountPath, certsVolume.HostPath.Path, certsVolume.HostPath.Type));
        Assert.NotEqual(true, certsMount.ReadOnlyProperty);
        var containerdConfig = Flag(init.Args, "--containerd-config")!;
        var (etcMount, etcVolume) = MountOf(pod, init, containerdConfig);
        Assert.True(etcMount.ReadOnlyProperty);
        Assert.Equal("/etc/containerd/config.toml", etcVolume.HostPath.Path + containerdConfig[etcMount.MountPath.Length..]);
        Assert.DoesNotContain(hoard.VolumeMounts, m => m.Name == certsMount.Name || m.Name == etcMount.Name);

        // Both read the upstreams from the generated ConfigMap (its name carries kustomize's hash).
        var configMap = objects.OfType<V1ConfigMap>().Single();
        foreach (var container in new[] { init, hoard })
        {
            var (configMount, configVolume) = MountOf(pod, container, Env(container, "HOARD_CONFIG")!);
            Assert.Equal(configMap.Metadata.Name, configVolume.ConfigMap.Name);
            Assert.True(configMount.ReadOnlyProperty);
        }

        // The data volume: an emptyDir whose sizeLimit leaves room above --max-size.
        using var temp = new TempDir();
        var (options, errors) = LoadServe(temp, objects, pod, hoard);
        Assert.Empty(errors);
        var (_, dataVolume) = MountOf(pod, hoard, Flag(hoard.Args, "--data")!);
        var sizeLimit = dataVolume.EmptyDir.SizeLimit.ToInt64();
        Assert.InRange(options.MaxSizeBytes, sizeLimit / 2, sizeLimit * 9 / 10);
        Assert.Equal($"http://{PodIp}:{port}", options.Advertise);
        Assert.Equal(SecretValue, options.ClusterSecret);
        Assert.Equal($"redis://:{SecretValue}@{redisService.Metadata.Name}:{redisServicePort.Port}", options.ClusterRedis);
        Assert.Contains(options.Registries, r => r.Name == "ghcr.io");

        // The init container's command, run: it refuses while containerd's config lacks config_path, then writes a
        // hosts.toml per registry of hoard.json with Hoard on this node first.
        var etc = temp.Sub("host-etc-containerd");
        var certsDir = Path.Combine(temp.Path, "host-certs.d");
        var args = init.Args.Select(a => a == certs ? certsDir : a.StartsWith(etcMount.MountPath + "/", StringComparison.Ordinal) ? etc + a[etcMount.MountPath.Length..] : a).ToList();
        var env = new Dictionary<string, string> { ["HOARD_CONFIG"] = MapPath(temp, pod, init, Env(init, "HOARD_CONFIG")!) };
        File.WriteAllText(Path.Combine(etc, "config.toml"), "version = 3\n[plugins.'io.containerd.cri.v1.images'.registry]\n  config_path = ''\n");
        var (code, output) = await Pip.RunAsync("dotnet", [HoardProcess.Dll, .. args], env);
        Assert.True(code == 3, output);
        Assert.False(Directory.Exists(certsDir));
        File.WriteAllText(Path.Combine(etc, "config.toml"), $"version = 3\n[plugins.'io.containerd.cri.v1.images'.registry]\n  config_path = '{certsDir}'\n");
        (code, output) = await Pip.RunAsync("dotnet", [HoardProcess.Dll, .. args], env);
        Assert.True(code == 0, output);
        Assert.Equal(options.Registries.Select(r => r.Name).Order(StringComparer.Ordinal), Directory.GetDirectories(certsDir).Select(Path.GetFileName).Order(StringComparer.Ordinal));
        var hub = Toml.Parse(File.ReadAllText(Path.Combine(certsDir, "docker.io", "hosts.toml")));
        Assert.Equal("https://registry-1.docker.io", hub.Get("server"));
        Assert.Equal(["pull", "resolve"], Assert.IsType<List<object>>(hub.Get("host", $"http://127.0.0.1:{port}", "capabilities")));
    }

    [Fact]
    public async Task Central_serves_https_with_the_certificate_from_a_secret_and_keeps_its_cache_on_a_persistent_volume()
    {
        var objects = await RenderAsync("central");
        Assert.Equal(
            ["ConfigMap", "Deployment", "Namespace", "PersistentVolumeClaim", "PodDisruptionBudget", "Service"],
            objects.Select(Kind).Order(StringComparer.Ordinal));
        AssertNamespace(objects, "hoard", "restricted");

        var deployment = objects.OfType<V1Deployment>().Single();
        AssertSelects(deployment.Spec.Selector, deployment.Spec.Template.Metadata.Labels);
        // One owner of the data directory at a time: the old pod goes before the new one mounts the volume.
        Assert.Equal(1, deployment.Spec.Replicas);
        Assert.Equal("Recreate", deployment.Spec.Strategy.Type);
        var pod = deployment.Spec.Template.Spec;
        var hoard = pod.Containers.Single();
        var port = hoard.Ports.Single();
        Assert.Equal("https", port.Name);
        AssertServes(pod, hoard, port.ContainerPort, "HTTPS");
        var annotations = deployment.Spec.Template.Metadata.Annotations;
        Assert.Equal(("true", "https", "/metrics"), (annotations["prometheus.io/scrape"], annotations["prometheus.io/scheme"], annotations["prometheus.io/path"]));
        Assert.Equal(port.ContainerPort.ToString(System.Globalization.CultureInfo.InvariantCulture), annotations["prometheus.io/port"]);

        // TLS: the two files of a kubernetes.io/tls Secret, mounted whole (a subPath mount would never see a renewal).
        var cert = Flag(hoard.Args, "--tls-cert")!;
        var key = Flag(hoard.Args, "--tls-key")!;
        var (tlsMount, tlsVolume) = MountOf(pod, hoard, cert);
        Assert.Equal(tlsMount.Name, MountOf(pod, hoard, key).Mount.Name);
        Assert.Equal(("hoard-tls", "tls.crt", "tls.key"), (tlsVolume.Secret.SecretName, Path.GetFileName(cert), Path.GetFileName(key)));
        Assert.True(tlsMount.ReadOnlyProperty);
        Assert.Null(tlsMount.SubPath);

        var service = objects.OfType<V1Service>().Single();
        AssertSelects(service.Spec.Selector, deployment.Spec.Template.Metadata.Labels);
        Assert.Equal((443, "https"), (service.Spec.Ports.Single().Port, service.Spec.Ports.Single().TargetPort.Value));
        var pdb = objects.OfType<V1PodDisruptionBudget>().Single();
        AssertSelects(pdb.Spec.Selector, deployment.Spec.Template.Metadata.Labels);
        Assert.Equal("1", pdb.Spec.MaxUnavailable.Value);

        using var temp = new TempDir();
        var pki = await TestCertificates.CreateAsync(temp.Sub("pki"));
        var (issuedCert, issuedKey) = await pki.IssueServerAsync(temp.Sub("issued"), "hoard.hoard.svc", 7);
        var (options, errors) = LoadServe(temp, objects, pod, hoard, new() { ["tls.crt"] = File.ReadAllText(issuedCert), ["tls.key"] = File.ReadAllText(issuedKey) });
        Assert.Empty(errors);
        Assert.Equal([$"https://0.0.0.0:{port.ContainerPort}"], options.Listen);
        Assert.Contains(options.Git, g => g.Name == "github");

        // The cache on the claim, with room above --max-size.
        var (_, data) = MountOf(pod, hoard, Flag(hoard.Args, "--data")!);
        var claim = objects.OfType<V1PersistentVolumeClaim>().Single(c => c.Metadata.Name == data.PersistentVolumeClaim.ClaimName);
        Assert.Equal(["ReadWriteOnce"], claim.Spec.AccessModes);
        var storage = claim.Spec.Resources.Requests["storage"].ToInt64();
        Assert.InRange(options.MaxSizeBytes, storage / 2, storage * 95 / 100);
    }

    /// <summary>`kubectl kustomize deploy/kubernetes/DIR`, read strictly into the API types.</summary>
    private static async Task<List<object>> RenderAsync(string dir)
    {
        var psi = new ProcessStartInfo("kubectl") { ArgumentList = { "kustomize", RepoFiles.PathOf(Path.Combine("deploy", "kubernetes", dir)) }, RedirectStandardOutput = true, RedirectStandardError = true };
        Process p;
        try
        {
            p = Process.Start(psi)!;
        }
        catch (Win32Exception e)
        {
            Assert.Fail($"kubectl is needed to render deploy/kubernetes (./test.sh installs Debian's kubernetes-client): {e.Message}");
            throw;
        }
        using (p)
        {
            var stdout = p.StandardOutput.ReadToEndAsync();
            var stderr = p.StandardError.ReadToEndAsync();
            await p.WaitForExitAsync();
            Assert.True(p.ExitCode == 0, $"kubectl kustomize {dir}: {await stderr}");
            // strict: a field the API type does not have (a typo, a field at the wrong level) is an error.
            return KubernetesYaml.LoadAllFromString(await stdout, strict: true);
        }
    }

    private static string Kind(object o) => ((IKubernetesObject)o).Kind;

    private static void AssertNamespace(List<object> objects, string name, string podSecurity)
    {
        var ns = objects.OfType<V1Namespace>().Single();
        Assert.Equal(name, ns.Metadata.Name);
        Assert.Equal(podSecurity, ns.Metadata.Labels["pod-security.kubernetes.io/enforce"]);
        foreach (var o in objects.Where(o => o is not V1Namespace).Cast<IMetadata<V1ObjectMeta>>())
        {
            Assert.Equal(name, o.Metadata.NamespaceProperty);
        }
    }

    private static bool Selects(V1LabelSelector selector, IDictionary<string, string> labels) =>
        selector.MatchExpressions is null && Selects(selector.MatchLabels, labels);

    private static bool Selects(IDictionary<string, string> selector, IDictionary<string, string> labels) =>
        selector.Count > 0 && selector.All(kv => labels.TryGetValue(kv.Key, out var v) && v == kv.Value);

    private static void AssertSelects(V1LabelSelector selector, IDictionary<string, string> labels) => Assert.True(Selects(selector, labels), "the selector does not match the pod labels");

    private static void AssertSelects(IDictionary<string, string> selector, IDictionary<string, string> labels) => Assert.True(Selects(selector, labels), "the selector does not match the pod labels");

    /// <summary>Hoard's container: the image, non-root, resources, and probes on /readyz and /healthz at the port it listens on.</summary>
    private static void AssertServes(V1PodSpec pod, V1Container hoard, int port, string scheme)
    {
        Assert.Equal(Image, hoard.Image);
        Assert.Equal("serve", hoard.Args[0]);
        AssertParses(hoard.Args);
        Assert.Equal($"{scheme.ToLowerInvariant()}://0.0.0.0:{port}", Flag(hoard.Args, "--listen"));
        AssertRestricted(pod, hoard);
        Assert.Equal(10001, hoard.SecurityContext.RunAsUser ?? pod.SecurityContext.RunAsUser);
        Assert.True(hoard.SecurityContext.ReadOnlyRootFilesystem);
        AssertResources(hoard);
        foreach (var (probe, path) in new[] { (hoard.ReadinessProbe, "/readyz"), (hoard.LivenessProbe, "/healthz"), (hoard.StartupProbe, "/healthz") })
        {
            Assert.Equal(path, probe.HttpGet.Path);
            Assert.Equal(scheme, probe.HttpGet.Scheme ?? "HTTP");
            var probePort = probe.HttpGet.Port.Value;
            Assert.True(probePort == port.ToString(System.Globalization.CultureInfo.InvariantCulture) || hoard.Ports.Any(p => p.Name == probePort && p.ContainerPort == port), probePort);
        }
        // A stop drains for --shutdown-timeout (30s by default) before the kubelet's SIGKILL.
        Assert.InRange(pod.TerminationGracePeriodSeconds ?? 30, 31, 120);
    }

    /// <summary>What the restricted Pod Security level asks of a container (the pod's settings count).</summary>
    private static void AssertRestricted(V1PodSpec pod, V1Container container)
    {
        Assert.NotNull(container.SecurityContext);
        Assert.NotNull(pod.SecurityContext);
        Assert.True(container.SecurityContext.RunAsNonRoot ?? pod.SecurityContext.RunAsNonRoot, container.Name + ": runAsNonRoot");
        Assert.NotEqual(0, container.SecurityContext.RunAsUser ?? pod.SecurityContext.RunAsUser);
        Assert.False(container.SecurityContext.AllowPrivilegeEscalation);
        Assert.Equal(["ALL"], container.SecurityContext.Capabilities.Drop);
        Assert.Equal("RuntimeDefault", (container.SecurityContext.SeccompProfile ?? pod.SecurityContext.SeccompProfile).Type);
        Assert.Null(container.SecurityContext.Privileged);
    }

    private static void AssertResources(V1Container container)
    {
        foreach (var resource in new[] { "cpu", "memory" })
        {
            Assert.True(container.Resources.Requests.ContainsKey(resource), $"{container.Name}: requests.{resource}");
            Assert.True(container.Resources.Limits.ContainsKey(resource), $"{container.Name}: limits.{resource}");
            Assert.True(container.Resources.Requests[resource].ToDecimal() <= container.Resources.Limits[resource].ToDecimal());
        }
    }

    private static void AssertParses(IList<string> args)
    {
        var parse = global::Hoard.Cli.Build().Parse(args.ToArray());
        Assert.True(parse.Errors.Count == 0, string.Join("; ", parse.Errors.Select(e => e.Message)));
    }

    /// <summary>The value after a flag (flags are separate items, never --flag=value).</summary>
    private static string? Flag(IList<string> args, string flag)
    {
        var at = args.IndexOf(flag);
        return at >= 0 && at + 1 < args.Count ? args[at + 1] : null;
    }

    private static string? Env(V1Container container, string name) => container.Env.SingleOrDefault(e => e.Name == name)?.Value;

    /// <summary>The mount a path in the container lies under (the longest), and its volume.</summary>
    private static (V1VolumeMount Mount, V1Volume Volume) MountOf(V1PodSpec pod, V1Container container, string path)
    {
        var mount = container.VolumeMounts.Where(m => path == m.MountPath || path.StartsWith(m.MountPath.TrimEnd('/') + "/", StringComparison.Ordinal)).MaxBy(m => m.MountPath.Length);
        Assert.True(mount is not null, $"{container.Name}: nothing is mounted at {path}");
        Assert.NotNull(mount);
        return (mount, pod.Volumes.Single(v => v.Name == mount.Name));
    }

    /// <summary>A path of the container, in the directory under <paramref name="temp"/> that stands for its volume.</summary>
    private static string MapPath(TempDir temp, V1PodSpec pod, V1Container container, string path)
    {
        var (mount, volume) = MountOf(pod, container, path);
        return Path.Combine(temp.Path, "volumes", volume.Name) + path[mount.MountPath.Length..];
    }

    [GeneratedRegex(@"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")]
    private static partial Regex VariableReference();

    /// <summary>
    /// `hoard serve` as the pod would start it: each volume a directory (ConfigMaps with their data, Secrets with
    /// <paramref name="secrets"/> or a sample value), the paths in flags and variables mapped onto them, $(VAR)
    /// references expanded as the kubelet does (the pod IP and secret values made up), through Hoard's settings loader.
    /// </summary>
    private static (HoardOptions Options, List<string> Errors) LoadServe(TempDir temp, List<object> objects, V1PodSpec pod, V1Container container, Dictionary<string, string>? secrets = null)
    {
        foreach (var mount in container.VolumeMounts)
        {
            var volume = pod.Volumes.Single(v => v.Name == mount.Name);
            var dir = Path.Combine(temp.Path, "volumes", volume.Name);
            Directory.CreateDirectory(dir);
            if (volume.ConfigMap is { } cm)
            {
                foreach (var (file, content) in objects.OfType<V1ConfigMap>().Single(c => c.Metadata.Name == cm.Name).Data)
                {
                    File.WriteAllText(Path.Combine(dir, file), content);
                }
            }
            else if (volume.Secret is { } secret)
            {
                IEnumerable<string> files = secret.Items is { } items ? items.Select(i => i.Path) : (IEnumerable<string>?)secrets?.Keys ?? [];
                foreach (var file in files)
                {
                    File.WriteAllText(Path.Combine(dir, file), secrets?.GetValueOrDefault(file) ?? SecretValue);
                }
            }
        }
        var variables = new Dictionary<string, string>(StringComparer.Ordinal);
        string Expand(string s) => VariableReference().Replace(s, m => variables.GetValueOrDefault(m.Groups[1].Value, m.Value));
        string MapIfPath(string s) => s.StartsWith('/') && container.VolumeMounts.Any(m => s.StartsWith(m.MountPath, StringComparison.Ordinal)) ? MapPath(temp, pod, container, s) : s;
        foreach (var e in container.Env)
        {
            variables[e.Name] = e.ValueFrom switch
            {
                { FieldRef.FieldPath: "status.podIP" } => PodIp,
                { SecretKeyRef: not null } => SecretValue,
                null => MapIfPath(Expand(e.Value)),
                _ => throw new InvalidOperationException($"{e.Name}: no sample value for {e.ValueFrom}"),
            };
        }
        var flags = new Dictionary<string, IReadOnlyList<string>>(StringComparer.Ordinal);
        var args = container.Args.Skip(1).Select(a => MapIfPath(Expand(a))).ToList();
        for (var i = 0; i < args.Count; i += 2)
        {
            Assert.StartsWith("--", args[i], StringComparison.Ordinal);
            var name = args[i][2..];
            flags[name] = [.. flags.GetValueOrDefault(name) ?? [], args[i + 1]];
        }
        Assert.False(flags.ContainsKey("config"), "the config file is given by HOARD_CONFIG");
        var environment = variables.Where(v => v.Key.StartsWith("HOARD_", StringComparison.Ordinal)).ToDictionary(v => v.Key, v => (string?)v.Value);
        return SettingsLoader.Load(environment.GetValueOrDefault("HOARD_CONFIG"), environment, flags);
    }
}
