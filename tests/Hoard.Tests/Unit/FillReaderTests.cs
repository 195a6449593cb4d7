using System.IO.Pipelines;
using Hoard.Core.Fetch;
using Hoard.Core.Upstream;
using Hoard.Tests.Infrastructure;

namespace Hoard.Tests.Unit;

/// <summary>Readers of a growing download: woken for every chunk and at the end, by one reusable waiter each.</summary>
public sealed class FillReaderTests
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(10);

    [Fact]
    public async Task A_wait_ends_at_once_when_the_version_moved_since_the_reader_looked()
    {
        var signal = new ProgressSignal();
        using var waiter = signal.Register(CancellationToken.None);
        var seen = signal.Version;
        signal.Signal();
        Assert.True(waiter.WaitAsync(seen).AsTask().IsCompletedSuccessfully);
        var pending = waiter.WaitAsync(signal.Version).AsTask();
        Assert.False(pending.IsCompleted);
        signal.Signal();
        await pending.WaitAsync(Patience);
    }

    [Fact]
    public async Task Every_waiting_reader_is_woken_by_every_signal_and_one_that_leaves_disturbs_none()
    {
        var signal = new ProgressSignal();
        using var leaving = new CancellationTokenSource();
        var waiters = new[] { signal.Register(CancellationToken.None), signal.Register(CancellationToken.None), signal.Register(leaving.Token) };
        for (var i = 0; i < 200; i++)
        {
            var seen = signal.Version;
            var waits = waiters.Select(w => w.WaitAsync(seen).AsTask()).ToArray();
            Assert.DoesNotContain(waits, w => w.IsCompleted);
            if (i == 100)
            {
                leaving.Cancel();
                await Assert.ThrowsAnyAsync<OperationCanceledException>(() => waits[2].WaitAsync(Patience));
                waiters[2].Dispose();
                Assert.Equal(2, signal.WaiterCount);
                waiters = waiters[..2];
                waits = waits[..2];
            }
            signal.Signal();
            await Task.WhenAll(waits).WaitAsync(Patience);
        }
        foreach (var waiter in waiters)
        {
            waiter.Dispose();
        }
        Assert.Equal(0, signal.WaiterCount);
    }

    [Fact]
    public async Task Readers_of_a_growing_file_get_every_chunk_as_it_lands_and_the_last_byte_once_it_is_verified()
    {
        using var temp = new TempDir();
        var (fill, file) = NewFill(temp);
        using var owned = file;
        var readers = Enumerable.Range(0, 3).Select(_ => new Reader(fill)).ToArray();
        using var leaving = new CancellationTokenSource();
        var leaver = new Reader(fill, leaving.Token);
        var data = new byte[64 * 1000];
        Random.Shared.NextBytes(data);
        var written = 0;
        for (var chunk = 0; chunk < 64; chunk++)
        {
            RandomAccess.Write(file, data.AsSpan(written, 1000), written);
            written += 1000;
            fill.Advance(written);
            // All but the last byte, until the download is verified: each reader must have been woken for this chunk.
            foreach (var reader in readers)
            {
                await reader.ReceiveAsync(written - 1);
            }
            if (chunk == 10)
            {
                await leaver.ReceiveAsync(written - 1);
                leaving.Cancel();
                Assert.Equal(CopyKind.ClientGone, (await leaver.Copy.WaitAsync(Patience)).Kind);
                // Its waiter is gone; the others' stay for their next waits.
                await Until(() => fill.Readers == 3);
            }
        }
        Assert.DoesNotContain(readers, r => r.Copy.IsCompleted);
        fill.Verified(written);
        foreach (var reader in readers)
        {
            var outcome = await reader.Copy.WaitAsync(Patience);
            Assert.Equal(CopyOutcome.Done(written), outcome);
            Assert.Equal(data, await reader.ReceiveAsync(written));
        }
        Assert.Equal(0, fill.Readers);
    }

    [Fact]
    public async Task Waiting_readers_are_woken_when_the_download_fails_and_are_told_whose_side_failed()
    {
        using var temp = new TempDir();
        var (fill, file) = NewFill(temp);
        using var owned = file;
        RandomAccess.Write(file, new byte[100], 0);
        fill.Advance(100);
        var readers = Enumerable.Range(0, 4).Select(_ => new Reader(fill)).ToArray();
        foreach (var reader in readers)
        {
            await reader.ReceiveAsync(99);
        }
        await Until(() => fill.Readers == 4);
        fill.Complete(new FillResult(FillEnd.UpstreamFailed, 100, null, new UpstreamException("body", 502, "upstream broke off")));
        foreach (var reader in readers)
        {
            Assert.Equal(CopyOutcome.UpstreamFailed("upstream broke off"), await reader.Copy.WaitAsync(Patience));
        }
        Assert.Equal(0, fill.Readers);
    }

    private static Task Until(Func<bool> condition) => Integration.FetchEngineTests.WaitUntil(condition, Patience);

    private static (Fill Fill, Microsoft.Win32.SafeHandles.SafeFileHandle File) NewFill(TempDir temp)
    {
        var request = new ArtifactRequest("files", "files/up/growing.bin", "up", new Uri("http://127.0.0.1:9/growing.bin"));
        var path = Path.Combine(temp.Path, "growing.part");
        var file = File.OpenHandle(path, FileMode.CreateNew, FileAccess.Write, FileShare.ReadWrite | FileShare.Delete);
        var fill = new Fill(request, null, _ => throw new InvalidOperationException("never committed here")) { TempPath = path };
        fill.SetStarted(new FillStart(FillStartKind.Streaming, null, null, null, null, null));
        return (fill, file);
    }

    /// <summary>A client streaming the fill into a pipe; what arrived is read off the other end.</summary>
    private sealed class Reader
    {
        private readonly Pipe _pipe = new();
        private readonly MemoryStream _received = new();

        public Reader(Fill fill, CancellationToken ct = default)
        {
            Copy = Task.Run(() => fill.CopyToAsync(_pipe.Writer, 0, -1,
                (_, _) => throw new InvalidOperationException("no passthrough in these tests"), ct));
        }

        public Task<CopyOutcome> Copy { get; }

        public async Task<byte[]> ReceiveAsync(long bytes)
        {
            using var timeout = new CancellationTokenSource(Patience);
            while (_received.Length < bytes)
            {
                var result = await _pipe.Reader.ReadAsync(timeout.Token);
                foreach (var segment in result.Buffer)
                {
                    _received.Write(segment.Span);
                }
                _pipe.Reader.AdvanceTo(result.Buffer.End);
                Assert.False(result.IsCompleted);
            }
            Assert.Equal(bytes, _received.Length);
            return _received.ToArray();
        }
    }
}
