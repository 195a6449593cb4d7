using System.Collections.Concurrent;
using Hoard.Core.Configuration;
using Hoard.Core.Hosting;
using Hoard.Core.Metrics;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Hoard.Tests.Infrastructure;

/// <summary>A real Hoard (Kestrel on a loopback port) in the test process; log lines are kept for assertions.</summary>
public sealed class HoardHost : IAsyncDisposable
{
    private readonly WebApplication _app;

    private HoardHost(WebApplication app, HoardOptions options, LogSink logs)
    {
        _app = app;
        Options = options;
        Logs = logs;
    }

    public HoardOptions Options { get; }
    public LogSink Logs { get; }
    public string BaseUrl { get; private set; } = "";

    /// <summary>Every bound address, in --listen order (BaseUrl is the first).</summary>
    public IReadOnlyList<string> Addresses { get; private set; } = [];

    /// <summary>
    /// The access log as it is now. It is written in the background, a moment after each response has ended: to see
    /// the line of a request just made, wait for it with <see cref="AccessLogAsync"/>.
    /// </summary>
    public string[] AccessLogLines
    {
        get
        {
            using var s = new FileStream(Options.AccessLog, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
            using var r = new StreamReader(s);
            return r.ReadToEnd().Split('\n', StringSplitOptions.RemoveEmptyEntries);
        }
    }

    /// <summary>
    /// The access log once <paramref name="count"/> of its lines match <paramref name="line"/>, or as it is after 10 s
    /// (for the caller's assertions to fail on).
    /// </summary>
    public async Task<string[]> AccessLogAsync(Predicate<string> line, int count = 1)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(10);
        var lines = AccessLogLines;
        while (Array.FindAll(lines, line).Length < count && DateTime.UtcNow < deadline)
        {
            await Task.Delay(50);
            lines = AccessLogLines;
        }
        return lines;
    }

    public HoardMetrics Metrics => _app.Services.GetRequiredService<HoardMetrics>();
    public T Service<T>() where T : notnull => _app.Services.GetRequiredService<T>();

    /// <summary>
    /// Waits until no download is running. A client has its last byte once the body is verified, a moment before
    /// the blob is committed: a test that then looks at the store waits for this first.
    /// </summary>
    public Task SettledAsync() =>
        Integration.FetchEngineTests.WaitUntil(() => Service<Hoard.Core.Fetch.FetchEngine>().InFlight == 0, TimeSpan.FromSeconds(10));

    /// <param name="time">The clock Hoard's TTLs, backoffs and timeouts run on: a FakeTimeProvider lets a test move it.</param>
    public static async Task<HoardHost> StartAsync(string dataDir, Action<HoardOptions> configure, TimeProvider? time = null)
    {
        var options = new HoardOptions { Listen = ["http://127.0.0.1:0"], DataDir = dataDir, LogLevel = "debug", AccessLog = dataDir.TrimEnd('/') + ".access.log" };
        configure(options);
        Assert.Empty(options.Validate());
        var logs = new LogSink();
        var app = HoardApp.Build(options, l => l.AddProvider(logs), time);
        await app.StartAsync();
        var host = new HoardHost(app, options, logs);
        host.Addresses = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.ToList();
        host.BaseUrl = host.Addresses[0];
        return host;
    }

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync();
        await _app.DisposeAsync();
    }
}

public sealed class LogSink : ILoggerProvider
{
    private readonly ConcurrentQueue<string> _lines = new();

    public IReadOnlyCollection<string> Lines => _lines;

    public bool Contains(string text) => _lines.Any(l => l.Contains(text, StringComparison.Ordinal));

    public ILogger CreateLogger(string categoryName) => new Logger(this, categoryName);

    public void Dispose()
    {
    }

    private sealed class Logger(LogSink sink, string category) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
            sink._lines.Enqueue($"{logLevel} {category}: {formatter(state, exception)}");
    }
}
