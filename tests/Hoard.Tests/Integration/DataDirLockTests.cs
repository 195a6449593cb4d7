using System.Security.Cryptography;
using Hoard.Tests.Infrastructure;

namespace Hoard.Tests.Integration;

/// <summary>One hoard process per data dir: a second one exits at once and touches nothing.</summary>
public sealed class DataDirLockTests
{
    [Fact]
    public async Task A_second_serve_on_the_same_data_dir_exits_2_naming_the_dir_and_pid_and_the_first_keeps_its_download_and_cache()
    {
        using var temp = new TempDir();
        var root = temp.Sub("up");
        var big = new byte[6 * 1024 * 1024];
        Random.Shared.NextBytes(big);
        File.WriteAllBytes(Path.Combine(root, "big.bin"), big);
        File.WriteAllText(Path.Combine(root, "small.txt"), "small and cached\n");
        await using var nginx = new Nginx(root, "location = /big.bin { limit_rate 2m; }");
        await nginx.StartAsync();
        var data = temp.Sub("data");
        var port = Ports.Free();
        await using var first = HoardProcess.Start(["serve", "--listen", $"http://127.0.0.1:{port}", "--data", data, "--files", $"up={nginx.BaseUrl}/"]);
        await Ports.WaitOpenAsync(port, TimeSpan.FromSeconds(30));
        using var http = new HttpClient();
        var baseUrl = $"http://127.0.0.1:{port}/files/up/";
        Assert.Equal("small and cached\n", await http.GetStringAsync(baseUrl + "small.txt"));

        // A download in progress: its temp file is what a second process's start-up clean-up would delete.
        using var download = await http.GetAsync(baseUrl + "big.bin", HttpCompletionOption.ResponseHeadersRead);
        await using var body = await download.Content.ReadAsStreamAsync();
        await body.ReadExactlyAsync(new byte[256 * 1024]);
        var tempFiles = Directory.GetFiles(Path.Combine(data, "tmp"));
        Assert.NotEmpty(tempFiles);

        await using var second = HoardProcess.Start(["serve", "--listen", $"http://127.0.0.1:{Ports.Free()}", "--data", data, "--files", $"up={nginx.BaseUrl}/"]);
        Assert.Equal(2, await second.ExitCodeAsync(TimeSpan.FromSeconds(60)));
        Assert.Contains($"the data dir '{data}' is in use by another Hoard (PID {first.Pid}", second.Output, StringComparison.Ordinal);
        Assert.Equal(tempFiles, Directory.GetFiles(Path.Combine(data, "tmp")));
        Assert.DoesNotContain("Data in", second.Output, StringComparison.Ordinal); // it never opened the index
        // cat, not File.ReadAllText: .NET takes a shared flock to read, which the holder's exclusive lock refuses.
        var (_, holder) = await Pip.RunAsync("cat", [Path.Combine(data, "hoard.lock")]);
        Assert.Equal(first.Pid.ToString(System.Globalization.CultureInfo.InvariantCulture), holder.Trim());

        using var rest = new MemoryStream();
        await body.CopyToAsync(rest);
        Assert.Equal(big.Length - 256 * 1024, rest.Length);
        Assert.Equal(SHA256.HashData(big.AsSpan(256 * 1024)), SHA256.HashData(rest.ToArray()));
        using var hit = await http.GetAsync(baseUrl + "small.txt");
        Assert.Equal("HIT", hit.Headers.GetValues("X-Hoard-Cache").Single());
        await FetchEngineTests.WaitUntil(() => Directory.GetFiles(Path.Combine(data, "tmp")).Length == 0, TimeSpan.FromSeconds(10));
        using var bigHit = await http.GetAsync(baseUrl + "big.bin");
        Assert.Equal("HIT", bigHit.Headers.GetValues("X-Hoard-Cache").Single());
    }
}
