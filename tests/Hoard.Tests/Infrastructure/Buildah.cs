using System.Text.Json;

namespace Hoard.Tests.Infrastructure;

/// <summary>
/// buildah with a storage of its own (vfs, in a temporary directory): what a test builds and runs is neither seen
/// nor left in the machine's image store, and two runs never meet. There is no Docker engine here and podman cannot
/// start containers; buildah runs them with chroot isolation on the host's network.
/// </summary>
public sealed class Buildah : IAsyncDisposable
{
    private readonly TempDir _dir;

    public Buildah()
    {
        Assert.True(Exists(), "buildah is not installed: ./test.sh installs it (apt-get install buildah)");
        _dir = new TempDir("hoard-buildah");
        GlobalArgs = ["--root", _dir.Sub("storage"), "--runroot", _dir.Sub("run"), "--storage-driver", "vfs"];
    }

    /// <summary>The options that select this storage; they go before the command (buildah ARGS... run ...).</summary>
    public IReadOnlyList<string> GlobalArgs { get; }

    public static bool Exists() =>
        Environment.GetEnvironmentVariable("PATH")?.Split(':').Any(d => d.Length > 0 && File.Exists(Path.Combine(d, "buildah"))) == true;

    /// <summary>`buildah ARGS`; fails the test unless it exits 0. Returns standard output and error together.</summary>
    public async Task<string> RunAsync(params string[] args)
    {
        var (code, output) = await TryRunAsync(args);
        Assert.True(code == 0, $"buildah {string.Join(' ', args)}: exit {code}\n{output}");
        return output;
    }

    public Task<(int Code, string Output)> TryRunAsync(params string[] args) => Pip.RunAsync("buildah", [.. GlobalArgs, .. args]);

    /// <summary>An image's configuration as Docker's format has it (the one that keeps HEALTHCHECK).</summary>
    public async Task<JsonElement> ImageConfigAsync(string image)
    {
        var (code, output) = await Pip.RunAsync("buildah", [.. GlobalArgs, "inspect", "--type", "image", image]);
        Assert.True(code == 0, output);
        using var doc = JsonDocument.Parse(output);
        return doc.RootElement.GetProperty("Docker").GetProperty("config").Clone();
    }

    /// <summary>Removes every working container (their mounts first), then the storage with everything in it.</summary>
    public async ValueTask DisposeAsync()
    {
        try
        {
            await Pip.RunAsync("buildah", [.. GlobalArgs, "rm", "--all"]);
        }
        finally
        {
            _dir.Dispose();
        }
    }
}
