using System.Globalization;
using System.Text.Json;
using Hoard.Tests.Infrastructure;

namespace Hoard.Tests.Integration;

/// <summary>
/// deploy/container: build.sh publishes `hoard` and builds the Containerfile with buildah, on a base image made here
/// from this machine's libraries (no registry for a real base is reachable), and the image's own entrypoint, command
/// and healthcheck then run in it (buildah run: chroot isolation, host network) with pip installing through it.
/// </summary>
[Collection(SerialCollection.Name)]
public sealed class ContainerImageTests
{
    private const string Base = "localhost/hoard-test-base";
    private const string Image = "localhost/hoard-test:latest";
    private const string Version = "9.8.7";
    private const string Source = "https://example.invalid/hoard";

    [Fact]
    public async Task The_image_runs_hoard_as_non_root_on_its_volume_answers_its_healthcheck_and_serves_pip()
    {
        await using var buildah = new Buildah();
        using var temp = new TempDir("hoard-image");
        await MakeBaseAsync(buildah, temp.Sub("rootfs"));

        // REVISION is left to build.sh: the commit checked out here.
        var (code, log) = await Pip.RunAsync(Path.Combine(RepoFiles.Root, "deploy", "container", "build.sh"),
            ["--base", Base, "-t", Image, "--", .. buildah.GlobalArgs, "--isolation", "chroot"],
            new Dictionary<string, string> { ["CONTAINER_BUILDER"] = "buildah", ["VERSION"] = Version, ["SOURCE"] = Source });
        Assert.True(code == 0, "build.sh: " + log);
        var (inGit, head) = await Pip.RunAsync("git", ["-C", RepoFiles.Root, "rev-parse", "HEAD"]);
        var revision = inGit == 0 ? head.Trim() : "unknown";

        // The configuration docker and Kubernetes read.
        var config = await buildah.ImageConfigAsync(Image);
        var user = config.GetProperty("User").GetString()!;
        Assert.Equal("10001:10001", user);
        Assert.True(config.GetProperty("ExposedPorts").TryGetProperty("8080/tcp", out _), config.ToString());
        Assert.True(config.GetProperty("Volumes").TryGetProperty("/var/lib/hoard", out _), config.ToString());
        var healthcheck = Strings(config.GetProperty("Healthcheck").GetProperty("Test"));
        Assert.Equal(["CMD", "/app/hoard", "health"], healthcheck);
        var entrypoint = Strings(config.GetProperty("Entrypoint"));
        var command = Strings(config.GetProperty("Cmd"));
        Assert.Equal(["/app/hoard"], entrypoint);
        Assert.Equal(["serve"], command);
        var env = Strings(config.GetProperty("Env"));
        Assert.Contains("HOARD_LISTEN=http://0.0.0.0:8080", env);
        Assert.Contains("HOARD_DATA=/var/lib/hoard", env);
        var labels = config.GetProperty("Labels");
        Assert.Equal(Version, labels.GetProperty("org.opencontainers.image.version").GetString());
        Assert.Equal(revision, labels.GetProperty("org.opencontainers.image.revision").GetString());
        Assert.Equal(Source, labels.GetProperty("org.opencontainers.image.source").GetString());
        Assert.Equal(Base, labels.GetProperty("org.opencontainers.image.base.name").GetString());

        const string container = "hoard-test-run";
        await buildah.RunAsync("from", "--name", container, Image);
        // The data directory in the image belongs to the user (a new volume is seeded from it), the program to root.
        var root = (await buildah.RunAsync("mount", container)).Split('\n')[0].Trim();
        Assert.Equal("10001", await OwnerAsync(Path.Combine(root, "var", "lib", "hoard")));
        Assert.Equal("0", await OwnerAsync(Path.Combine(root, "app", "hoard")));
        await buildah.RunAsync("umount", container);
        // The version given to the build, and the commit it was built from (the SDK records it).
        var expected = inGit == 0 ? $"hoard {Version} (commit {revision[..12]})\n" : $"hoard {Version}";
        Assert.Contains(expected, await buildah.RunAsync("run", "--isolation", "chroot", "--network", "host", container, "--", "/app/hoard", "version"), StringComparison.Ordinal);

        var index = new PackageIndex(temp.Sub("upstream"));
        var wheel = index.AddWheel("image-demo", "1.0");
        index.WriteHtml();
        await using var nginx = new Nginx(index.Root);
        await nginx.StartAsync();

        // The image's entrypoint and command as they are; only where it listens (loopback, a free port: the network
        // is the host's) and the upstream come from the environment, as `docker run -e` would give them.
        var port = Ports.Free();
        var listen = $"HOARD_LISTEN=http://127.0.0.1:{port}";
        string[] run = [.. buildah.GlobalArgs, "run", "--isolation", "chroot", "--network", "host", "--env", listen, "--env", $"HOARD_PYPI=up={nginx.BaseUrl}/simple/", container, "--", .. entrypoint, .. command];
        await using var serving = HoardProcess.Start(run, executable: "buildah");
        await Ports.WaitOpenAsync(port, TimeSpan.FromSeconds(60));

        var hoard = HoardIn(serving.Pid);
        Assert.Equal(10001, UserOf(hoard));
        var (healthy, said) = await buildah.TryRunAsync(["run", "--isolation", "chroot", "--network", "host", "--env", listen, container, "--", .. healthcheck[1..]]);
        Assert.True(healthy == 0, said);
        Assert.Contains("/healthz: ok", said, StringComparison.Ordinal);

        using (var pip = await Pip.CreateAsync())
        {
            var (installed, output) = await pip.InstallAsync($"http://127.0.0.1:{port}/simple/", "image-demo");
            Assert.True(installed == 0, output + "\n" + serving.Output);
            Assert.Equal("1.0", (await pip.RunPythonAsync("import image_demo; print(image_demo.VERSION)")).Output.Trim());
        }
        Assert.Equal(1, nginx.Count("/packages/" + wheel.Filename));
        using (var again = await Pip.CreateAsync())
        {
            var (installed, output) = await again.InstallAsync($"http://127.0.0.1:{port}/simple/", "image-demo==1.0");
            Assert.True(installed == 0, output);
        }
        Assert.Equal(1, nginx.Count("/packages/" + wheel.Filename)); // the second came from what Hoard stored

        // docker stop: SIGTERM to the process, a graceful stop, exit 0; the healthcheck then fails.
        var (killed, why) = await Pip.RunAsync("kill", ["-TERM", hoard.ToString(CultureInfo.InvariantCulture)]);
        Assert.True(killed == 0, why);
        Assert.Equal(0, await serving.ExitCodeAsync(TimeSpan.FromSeconds(40)));
        var (afterStop, _) = await buildah.TryRunAsync(["run", "--isolation", "chroot", "--network", "host", "--env", listen, container, "--", .. healthcheck[1..]]);
        Assert.Equal(1, afterStop);

        Assert.Contains("Data in /var/lib/hoard", serving.Output, StringComparison.Ordinal);
        Assert.Contains("Stopped serving", serving.Output, StringComparison.Ordinal);
        // The base sets ASPNETCORE_HTTP_PORTS as .NET's do: the image clears it, so Kestrel has nothing to override.
        Assert.DoesNotContain("Overriding address", serving.Output, StringComparison.Ordinal);
    }

    /// <summary>
    /// A stand-in for mcr.microsoft.com/dotnet/runtime-deps:10.0-noble-chiseled with what it holds (glibc,
    /// libgcc_s, libstdc++, OpenSSL 3; /tmp; its non-root user and ASPNETCORE_HTTP_PORTS), the libraries copied from
    /// this machine with everything they load.
    /// </summary>
    private static async Task MakeBaseAsync(Buildah buildah, string rootfs)
    {
        var cache = (await Pip.RunAsync("ldconfig", ["-p"])).Output.Split('\n');
        var wanted = new[] { "libc.so.6", "libm.so.6", "libdl.so.2", "librt.so.1", "libpthread.so.0", "libgcc_s.so.1", "libstdc++.so.6", "libssl.so.3", "libcrypto.so.3" };
        var files = new SortedSet<string>(StringComparer.Ordinal);
        foreach (var soname in wanted)
        {
            var line = cache.FirstOrDefault(l => l.TrimStart().StartsWith(soname + " ", StringComparison.Ordinal) && l.Contains("=> /", StringComparison.Ordinal));
            Assert.True(line is not null, $"{soname} is not in this machine's ldconfig cache");
            var path = line[(line.IndexOf("=> ", StringComparison.Ordinal) + 3)..].Trim();
            files.Add(path);
            // ldd names what it loads in turn, the dynamic loader under its own path (/lib64/ld-linux-x86-64.so.2).
            var (code, ldd) = await Pip.RunAsync("ldd", [path]);
            Assert.True(code == 0 && !ldd.Contains("not found", StringComparison.Ordinal), $"ldd {path}: {ldd}");
            foreach (var entry in ldd.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
            {
                var target = entry.Contains("=> ", StringComparison.Ordinal) ? entry[(entry.IndexOf("=> ", StringComparison.Ordinal) + 3)..] : entry;
                if (target.StartsWith('/'))
                {
                    files.Add(target.Split(' ')[0]);
                }
            }
        }
        foreach (var file in files)
        {
            var copy = rootfs + file;
            Directory.CreateDirectory(Path.GetDirectoryName(copy)!);
            File.Copy(file, copy); // the file a symbolic link leads to, under the link's name
        }
        var tmp = Directory.CreateDirectory(Path.Combine(rootfs, "tmp")).FullName;
        if (!OperatingSystem.IsWindows())
        {
            File.SetUnixFileMode(tmp, (UnixFileMode)Convert.ToInt32("1777", 8)); // as in every base: anyone, sticky
        }
        Directory.CreateDirectory(Path.Combine(rootfs, "var", "lib"));

        const string container = "hoard-test-base";
        await buildah.RunAsync("from", "--name", container, "scratch");
        await buildah.RunAsync("copy", container, rootfs + "/", "/");
        await buildah.RunAsync("config", "--user", "1654:1654", "--env", "ASPNETCORE_HTTP_PORTS=8080", "--env", "DOTNET_RUNNING_IN_CONTAINER=true", container);
        await buildah.RunAsync("commit", container, Base);
        await buildah.RunAsync("rm", container);
    }

    /// <summary>The hoard process that `buildah run` (its ancestor) started in the container.</summary>
    private static int HoardIn(int buildahPid)
    {
        var parents = new Dictionary<int, int>();
        foreach (var dir in Directory.GetDirectories("/proc"))
        {
            if (int.TryParse(Path.GetFileName(dir), out var pid))
            {
                try
                {
                    var stat = File.ReadAllText(Path.Combine(dir, "stat"));
                    parents[pid] = int.Parse(stat[(stat.LastIndexOf(')') + 2)..].Split(' ')[1], CultureInfo.InvariantCulture);
                }
                catch (IOException)
                {
                    // ended meanwhile
                }
            }
        }
        bool Below(int pid) => parents.TryGetValue(pid, out var parent) && (parent == buildahPid || (parent > 1 && Below(parent)));
        var found = parents.Keys.Where(Below).Where(pid =>
        {
            try
            {
                return File.ReadAllText($"/proc/{pid}/cmdline").Split('\0') is ["/app/hoard", "serve", ..];
            }
            catch (IOException)
            {
                return false;
            }
        }).ToList();
        Assert.True(found.Count == 1, $"hoard processes under buildah {buildahPid}: {string.Join(", ", found)}");
        return found[0];
    }

    private static int UserOf(int pid) =>
        int.Parse(File.ReadLines($"/proc/{pid}/status").First(l => l.StartsWith("Uid:", StringComparison.Ordinal)).Split('\t', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture);

    private static async Task<string> OwnerAsync(string path)
    {
        var (code, output) = await Pip.RunAsync("stat", ["-c", "%u", path]);
        Assert.True(code == 0, output);
        return output.Trim();
    }

    private static string[] Strings(JsonElement array) => array.EnumerateArray().Select(e => e.GetString()!).ToArray();
}
