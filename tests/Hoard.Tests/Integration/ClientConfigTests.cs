using Hoard.Tests.Infrastructure;

namespace Hoard.Tests.Integration;

/// <summary>`hoard config` for container clients and git, checked with the real clients that read what it writes.</summary>
public sealed class ClientConfigTests
{
    [Fact]
    public async Task Registries_conf_falls_back_to_a_plain_http_registry_when_hoard_is_down()
    {
        var (temp, registry, single, _) = await OciTests.UpstreamWithImagesAsync();
        using var __ = temp;
        await using var ___ = registry;
        // A name that resolves nowhere, and a Hoard URL where nothing listens: only the [[registry]] location (the
        // plain-HTTP registry, reachable only with insecure = true) can serve this pull.
        var name = $"reg{Guid.NewGuid():N}"[..12] + ".test";
        var down = $"http://127.0.0.1:{Ports.Free()}";
        // skopeo 1.9 reads only /etc/containers/registries.conf(.d): the drop-in goes there, uniquely named, and is removed.
        var conf = $"/etc/containers/registries.conf.d/{name}.conf";
        try
        {
            var (code, output) = await Pip.RunAsync("dotnet", [HoardProcess.Dll, "config", "podman", "--url", down, "--registry", $"{name}=http://{registry.Host}/", "--apply", "--path", conf]);
            Assert.True(code == 0, output);
            var text = File.ReadAllText(conf);
            Assert.Contains($"[[registry]]\nprefix = \"{name}\"\nlocation = \"{registry.Host}\"\ninsecure = true\n", text, StringComparison.Ordinal);
            Assert.Contains($"[[registry.mirror]]\nlocation = \"{new Uri(down).Authority}/{name}\"\ninsecure = true\n", text, StringComparison.Ordinal);
            var dest = temp.Sub("pulled");
            (code, output) = await Pip.RunAsync("skopeo", ["copy", "--retry-times", "0", $"docker://{name}/team/app:v1", $"dir:{dest}"]);
            Assert.True(code == 0, output + "\n" + text);
            OciTests.AssertPulled(dest, single, all: true);
        }
        finally
        {
            File.Delete(conf);
        }
    }
}
