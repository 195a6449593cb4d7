using Hoard.Core.Http;
using Hoard.Core.Storage;
using Hoard.Tests.Infrastructure;

namespace Hoard.Tests.Integration;

/// <summary>
/// A hostile index: its page gives a sha256 the file's bytes do not have. A small file is verified before the status
/// line goes out, so the client that asked gets a 502 and the reason (pip shows it) instead of a body cut off; a large
/// one streams at once and is cut off before its last byte. Neither is ever stored.
/// </summary>
public sealed class DigestMismatchTests
{
    /// <summary>
    /// What the hostile page claims for a project's file: a digest of its own for each (a download is shared, and a
    /// failure remembered, by the digest a public file is asked for as).
    /// </summary>
    private static string Claimed(string project) => Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(project)));

    [Fact]
    public async Task Pip_and_any_client_get_a_502_naming_both_digests_for_a_small_mismatched_file_and_nothing_is_stored()
    {
        using var temp = new TempDir();
        var index = new PackageIndex(temp.Sub("upstream"));
        var tampered = index.AddWheel("tampered", "1.0", extraBytes: 200_000);
        var other = index.AddWheel("tampered-too", "1.0", extraBytes: 300_000);
        index.WriteHtml(hashOverride: w => Claimed(w.Project));
        await using var nginx = new Nginx(index.Root);
        await nginx.StartAsync();
        await using var hoard = await HoardHost.StartAsync(temp.Sub("data"), o => PipTests.SetPypi(o, "up=" + nginx.BaseUrl + "/simple/"));

        // pip's own download is the one that starts the fill: it is answered 502 with the reason, which pip prints.
        using (var pip = await Pip.CreateAsync())
        {
            var (code, output) = await pip.InstallAsync(hoard.BaseUrl + "/simple/", "tampered");
            Assert.True(code != 0, output);
            Assert.Contains("502", output, StringComparison.Ordinal);
            Assert.Contains($"is {tampered.Sha256}, the index says {Claimed(tampered.Project)}", output, StringComparison.Ordinal);
            Assert.Contains("upstream 'up'", output, StringComparison.Ordinal);
        }
        Assert.True(hoard.Logs.Contains("Answered 502 for pypi/up/files/tampered/" + tampered.Filename + " before its first byte"));

        // Any client asking first reads the same from its own response: status, reason phrase, a plain-text body.
        using var http = new HttpClient();
        using var response = await http.GetAsync(hoard.BaseUrl + "/simple/tampered-too/" + other.Filename);
        Assert.Equal(502, (int)response.StatusCode);
        Assert.StartsWith("Bad Gateway: sha256 of ", response.ReasonPhrase, StringComparison.Ordinal);
        Assert.Equal("text/plain; charset=utf-8", response.Content.Headers.ContentType?.ToString());
        var body = await response.Content.ReadAsStringAsync();
        Assert.Equal($"sha256 of pypi/up/files/tampered-too/{other.Filename} from upstream 'up' is {other.Sha256}, the index says {Claimed(other.Project)}; not stored\n", body);
        Assert.Equal(1, nginx.Count("/packages/" + other.Filename));

        await AssertNothingStoredAsync(hoard, tampered, other);
        Assert.Equal(2, hoard.Metrics.Get("hoard_digest_mismatch_total{protocol=\"pypi\"}"));
        Assert.Equal(2, hoard.Metrics.Get("hoard_upstream_errors_total{protocol=\"pypi\",upstream=\"up\",reason=\"digest_mismatch\"}"));
    }

    [Fact]
    public async Task A_large_mismatched_file_streams_at_once_and_is_cut_off_before_its_last_byte()
    {
        using var temp = new TempDir();
        var index = new PackageIndex(temp.Sub("upstream"));
        var big = index.AddWheel("big-tampered", "1.0", extraBytes: ArtifactResponder.MaxVerifiedFirstBytes + 1024 * 1024);
        index.WriteHtml(hashOverride: w => Claimed(w.Project));
        // About a second to download: the response has started well before the check fails (from an upstream as fast as
        // the disk, the whole body could be in and refused before the status line reached the client).
        await using var nginx = new Nginx(index.Root, "location /packages/ { limit_rate 16m; }");
        await nginx.StartAsync();
        await using var hoard = await HoardHost.StartAsync(temp.Sub("data"), o => PipTests.SetPypi(o, "up=" + nginx.BaseUrl + "/simple/"));

        await AssertStreamedThenCutOffAsync(hoard.BaseUrl + "/simple/big-tampered/" + big.Filename, big.Size);
        await AssertNothingStoredAsync(hoard, big);
    }

    [Fact]
    public async Task A_small_file_from_an_upstream_too_slow_to_verify_it_in_time_streams_rather_than_starve_the_client()
    {
        using var temp = new TempDir();
        var index = new PackageIndex(temp.Sub("upstream"));
        // About 7 s at 100 KB/s: longer than the responder waits before it sends what it has.
        var slow = index.AddWheel("slow-tampered", "1.0", extraBytes: 700_000);
        index.WriteHtml(hashOverride: w => Claimed(w.Project));
        await using var nginx = new Nginx(index.Root, "location /packages/ { limit_rate 100k; }");
        await nginx.StartAsync();
        await using var hoard = await HoardHost.StartAsync(temp.Sub("data"), o => PipTests.SetPypi(o, "up=" + nginx.BaseUrl + "/simple/"));

        var started = System.Diagnostics.Stopwatch.GetTimestamp();
        await AssertStreamedThenCutOffAsync(hoard.BaseUrl + "/simple/slow-tampered/" + slow.Filename, slow.Size,
            headers => Assert.InRange(headers.TotalSeconds, ArtifactResponder.MaxVerifyFirstWait.TotalSeconds - 0.5, ArtifactResponder.MaxVerifyFirstWait.TotalSeconds + 1.5),
            started);
        await AssertNothingStoredAsync(hoard, slow);
    }

    [Fact]
    public void The_reason_phrase_is_one_printable_line()
    {
        var phrase = ArtifactResponder.ReasonPhrase(502, "upstream 'x' sent \r\nSet-Cookie: a=b\u00e9" + new string('z', 1000));
        Assert.StartsWith("Bad Gateway: upstream 'x' sent ??Set-Cookie: a=b?zzz", phrase, StringComparison.Ordinal);
        Assert.All(phrase, c => Assert.InRange(c, ' ', '~'));
        Assert.True(phrase.Length <= 400);
    }

    /// <summary>A 200 whose body breaks off before its declared length: the status line went out before the check.</summary>
    private static async Task AssertStreamedThenCutOffAsync(string url, long size, Action<TimeSpan>? headersAt = null, long started = 0)
    {
        using var http = new HttpClient();
        using var response = await http.GetAsync(url, HttpCompletionOption.ResponseHeadersRead);
        headersAt?.Invoke(System.Diagnostics.Stopwatch.GetElapsedTime(started));
        Assert.Equal(200, (int)response.StatusCode);
        Assert.Equal(size, response.Content.Headers.ContentLength);
        await using var body = await response.Content.ReadAsStreamAsync();
        var read = 0L;
        var buffer = new byte[64 * 1024];
        await Assert.ThrowsAnyAsync<IOException>(async () =>
        {
            int n;
            while ((n = await body.ReadAsync(buffer)) > 0)
            {
                read += n;
            }
        });
        Assert.True(read < size, $"read {read} of {size} bytes");
    }

    private static async Task AssertNothingStoredAsync(HoardHost hoard, params BuiltWheel[] wheels)
    {
        // The client's answer goes out before the download's clean-up ends: wait for that.
        await hoard.SettledAsync();
        var cache = hoard.Service<CacheIndex>();
        var store = hoard.Service<ContentStore>();
        foreach (var wheel in wheels)
        {
            Assert.False(cache.TryGetBlob(wheel.Sha256, out _));
            Assert.False(cache.TryGetBlob(Claimed(wheel.Project), out _));
            Assert.False(cache.TryGetEntry($"pypi/up/files/{wheel.Project}/{wheel.Filename}", out _));
            Assert.False(File.Exists(store.BlobPath(wheel.Sha256)));
        }
        // The temp files the downloads went into are gone too (deleted when the check failed).
        Assert.Empty(Directory.GetFiles(store.TempDir));
    }
}
