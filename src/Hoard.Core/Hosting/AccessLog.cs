using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Threading.Channels;
using Hoard.Core.Metrics;

namespace Hoard.Core.Hosting;

/// <summary>
/// One line per request, written by a background task in batches, as nginx's access log is. Going through
/// ILogger and the console formatter cost 40% of cache-hit throughput on 3 KB files; this costs a channel write.
/// Lines are dropped (and counted) rather than slowing requests if the output cannot keep up.
/// </summary>
public sealed class AccessLog : IAsyncDisposable
{
    public readonly record struct Entry(long UnixMs, string Method, string Path, int Status, CacheOutcome Outcome, long Bytes, double Ms, string? Error);

    private readonly Channel<Entry> _channel = Channel.CreateBounded<Entry>(new BoundedChannelOptions(65536)
    {
        FullMode = BoundedChannelFullMode.DropWrite,
        SingleReader = true,
    });
    private readonly Stream? _output;
    private readonly bool _json;
    private readonly Task _writer;
    private long _dropped;

    /// <param name="target">"stdout", "off", or a file path (appended to).</param>
    public AccessLog(string target, bool json)
    {
        _json = json;
        _output = target switch
        {
            "off" => null,
            "stdout" or "-" => Console.OpenStandardOutput(),
            _ => new FileStream(target, FileMode.Append, FileAccess.Write, FileShare.ReadWrite, 1, FileOptions.None),
        };
        _writer = _output is null ? Task.CompletedTask : Task.Run(WriteLoopAsync);
    }

    public bool Enabled => _output is not null;

    public long Dropped => Interlocked.Read(ref _dropped);

    public void Write(in Entry entry)
    {
        if (_output is not null && !_channel.Writer.TryWrite(entry))
        {
            Interlocked.Increment(ref _dropped);
        }
    }

    private async Task WriteLoopAsync()
    {
        var sb = new StringBuilder(64 * 1024);
        var reader = _channel.Reader;
        while (await reader.WaitToReadAsync())
        {
            while (sb.Length < 60 * 1024 && reader.TryRead(out var e))
            {
                Format(sb, e);
            }
            var bytes = Encoding.UTF8.GetBytes(sb.ToString());
            sb.Clear();
            try
            {
                await _output!.WriteAsync(bytes);
                await _output.FlushAsync();
            }
            catch (IOException)
            {
                // stdout closed or disk full: an access log must never take the server down.
            }
        }
    }

    private void Format(StringBuilder sb, in Entry e)
    {
        var time = DateTimeOffset.FromUnixTimeMilliseconds(e.UnixMs).ToString("yyyy-MM-ddTHH:mm:ss.fffZ", CultureInfo.InvariantCulture);
        var outcome = e.Outcome == CacheOutcome.None ? "-" : OutcomeNames[(int)e.Outcome];
        if (_json)
        {
            sb.Append("{\"time\":\"").Append(time).Append("\",\"category\":\"Hoard.Access\",\"method\":");
            sb.Append(JsonSerializer.Serialize(e.Method)).Append(",\"path\":").Append(JsonSerializer.Serialize(e.Path));
            sb.Append(CultureInfo.InvariantCulture, $",\"status\":{e.Status},\"outcome\":\"{outcome}\",\"bytes\":{e.Bytes},\"ms\":{e.Ms:0.0}");
            if (e.Error is not null)
            {
                sb.Append(",\"error\":").Append(JsonSerializer.Serialize(e.Error));
            }
            sb.Append("}\n");
            return;
        }
        sb.Append(time).Append(" access: ");
        AppendEscaped(sb, e.Method).Append(' ');
        AppendEscaped(sb, e.Path).Append(' ')
          .Append(e.Status).Append(' ').Append(outcome).Append(' ').Append(e.Bytes).Append(' ')
          .Append(e.Ms.ToString("0.0", CultureInfo.InvariantCulture)).Append("ms");
        if (e.Error is not null)
        {
            AppendEscaped(sb.Append(' '), e.Error);
        }
        sb.Append('\n');
    }

    /// <summary>
    /// A client's path (decoded: "%0a" is a newline by now) and an upstream's error text must not start a line of
    /// their own that reads like another request: control characters (C0, DEL, C1), the Unicode line and paragraph
    /// separators and the backslash itself are written as \xNN (\uNNNN), so one request is always one line.
    /// The JSON format needs none of this: the serializer escapes control characters.
    /// </summary>
    internal static StringBuilder AppendEscaped(StringBuilder sb, string text)
    {
        var start = 0;
        for (var i = 0; i < text.Length; i++)
        {
            var c = text[i];
            if (c >= 0x20 && c != '\\' && (c < 0x7f || c > 0x9f) && c != '\u2028' && c != '\u2029')
            {
                continue;
            }
            sb.Append(text, start, i - start);
            if (c <= 0xff)
            {
                sb.Append(CultureInfo.InvariantCulture, $"\\x{(int)c:x2}");
            }
            else
            {
                sb.Append(CultureInfo.InvariantCulture, $"\\u{(int)c:x4}");
            }
            start = i + 1;
        }
        return sb.Append(text, start, text.Length - start);
    }

    private static readonly string[] OutcomeNames = Enum.GetValues<CacheOutcome>().Select(o => o.ToString().ToLowerInvariant()).ToArray();

    public async ValueTask DisposeAsync()
    {
        _channel.Writer.TryComplete();
        await _writer;
        if (_output is not null)
        {
            await _output.DisposeAsync();
        }
    }
}
