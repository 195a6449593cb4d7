using System.Diagnostics;
using Hoard.Core.Configuration;
using Hoard.Core.Fetch;
using Hoard.Core.Files;
using Hoard.Core.Http;
using Hoard.Core.Metrics;
using Hoard.Core.PyPI;
using Hoard.Core.Upstream;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Hoard.Core.Hosting;

/// <summary>Builds the one web application that serves every protocol on one port.</summary>
public static partial class HoardApp
{
    /// <param name="time">The clock Hoard's TTLs, backoffs and idle timeouts run on (a test may pass a fake one); null: the system's.</param>
    /// <exception cref="DataDirInUseException">another process serves the same data dir</exception>
    /// <summary>A repository's mirror by the name pins record it under (relative to the mirrors' root).</summary>
    private static Func<UpstreamSpec, string, string> MirrorNameOf(Git.GitMirror mirrors) =>
        (upstream, repository) => mirrors.Space.NameOf(mirrors.PathOf(upstream, repository));

    public static WebApplication Build(HoardOptions options, Action<ILoggingBuilder>? configureLogging = null, TimeProvider? time = null)
    {
        Directory.CreateDirectory(options.DataDir);
        // Before anything else reads or writes the data dir: the lock is what makes start-up's clean-up safe.
        var dataDirLock = DataDirLock.Acquire(options.DataDir);
        try
        {
            return BuildLocked(options, dataDirLock, configureLogging, time ?? TimeProvider.System);
        }
        catch
        {
            dataDirLock.Dispose();
            throw;
        }
    }

    private static WebApplication BuildLocked(HoardOptions options, DataDirLock dataDirLock, Action<ILoggingBuilder>? configureLogging, TimeProvider time)
    {
        // Hoard's settings come from SettingsLoader, not appsettings.json. The host's defaults would watch the working
        // directory recursively for config changes, and a data dir below it (`--data ./cache`) then costs an inotify
        // event on every write of every download: the content root is the app's own folder, and nothing is watched.
        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions
        {
            Args = ["--hostBuilder:reloadConfigOnChange=false"],
            ApplicationName = "hoard",
            ContentRootPath = AppContext.BaseDirectory,
        });
        builder.WebHost.ConfigureKestrel(k =>
        {
            k.AddServerHeader = false;
            k.Limits.MaxRequestBodySize = 1024 * 1024;
            Listeners.Bind(k, options);
        });
        builder.Logging.ClearProviders();
        if (options.LogFormat == "json")
        {
            builder.Logging.AddJsonConsole(o =>
            {
                o.UseUtcTimestamp = true;
                o.TimestampFormat = "yyyy-MM-ddTHH:mm:ss.fffZ";
            });
        }
        else
        {
            builder.Logging.AddSimpleConsole(o =>
            {
                o.SingleLine = true;
                o.UseUtcTimestamp = true;
                o.TimestampFormat = "yyyy-MM-ddTHH:mm:ss.fffZ ";
            });
        }
        builder.Logging.SetMinimumLevel(Enum.Parse<LogLevel>(options.LogLevel, ignoreCase: true));
        builder.Logging.AddFilter("Microsoft", LogLevel.Warning);
        builder.Logging.AddFilter("System.Net.Http", LogLevel.Warning);
        // A failure to start (a port in use) is thrown to `hoard serve`, which says it in one line: not logged here
        // as well, with its stack.
        builder.Logging.AddFilter("Microsoft.Extensions.Hosting.Internal.Host", LogLevel.None);
        configureLogging?.Invoke(builder.Logging);

        var services = builder.Services;
        services.AddSingleton(options);
        // A factory, not an instance: the container then disposes it, after everything resolved later (the index,
        // the fetch engine finishing its commits), so the lock is released last.
        services.AddSingleton(_ => dataDirLock);
        services.AddSingleton(time);
        services.AddSingleton<HoardMetrics>();
        services.AddSingleton<ServerCertificate>();
        services.AddSingleton<AdminAuth>();
        services.AddSingleton(_ => new AccessLog(options.AccessLog, options.LogFormat == "json"));
        services.AddSingleton<UpstreamClient>();
        FetchEngine.Register(services, options);
        services.AddSingleton<ArtifactResponder>();
        services.AddSingleton<PypiFrontEnd>();
        services.AddSingleton<FilesFrontEnd>();
        services.AddSingleton<Access.AccessGate>();
        services.AddSingleton<RequestBodyReader>();
        services.AddSingleton<Oci.RegistryAuthenticator>();
        services.AddSingleton<Oci.OciFrontEnd>();
        services.AddSingleton<Git.GitMirror>();
        services.AddSingleton<Git.LfsProxy>();
        services.AddSingleton<Git.GitFrontEnd>();
        services.AddSingleton(sp => new Warm.SelfClient(sp.GetRequiredService<Microsoft.AspNetCore.Hosting.Server.IServer>(), sp.GetRequiredService<ServerCertificate>));
        services.AddHostedService<Maintenance>();
        if (options.ClusterRedis is not null)
        {
            services.AddSingleton<Cluster.ClusterNode>();
            services.AddHostedService(sp => sp.GetRequiredService<Cluster.ClusterNode>());
        }
        services.AddRouting();
        // SIGTERM (the host maps it, and SIGINT, to a stop): Kestrel stops accepting, responses in flight get this long.
        services.Configure<HostOptions>(o => o.ShutdownTimeout = options.ShutdownTimeout);

        var app = builder.Build();
        Prepare(app, options);
        app.UseMiddleware<AccessLogMiddleware>();
        app.UseRouting();
        var metrics = app.Services.GetRequiredService<HoardMetrics>();
        metrics.PublishInstruments();
        app.MapGet("/healthz", () => Results.Text("ok\n"));
        // Alive (healthz) is not ready: from the moment a stop begins, load balancers are told to send no more.
        app.MapGet("/readyz", () => app.Lifetime.ApplicationStopping.IsCancellationRequested
            ? Results.Text("stopping\n", statusCode: StatusCodes.Status503ServiceUnavailable)
            : Results.Text("ready\n"));
        app.MapGet("/metrics", () => Results.Text(metrics.Render(), "text/plain; version=0.0.4; charset=utf-8"));
        ClientConfigEndpoint.Map(app, options);
        StatusEndpoint.Map(app, options, app.Services.GetRequiredService<FetchEngine>(), metrics, app.Services.GetRequiredService<AdminAuth>(),
            options.ClusterRedis is null ? null : app.Services.GetRequiredService<Cluster.ClusterNode>());
        app.MapGet("/", (HttpContext ctx) => Results.Content(Dashboard.Render(ctx, options, app.Services.GetRequiredService<FetchEngine>()), "text/html; charset=utf-8"));
        app.Services.GetRequiredService<PypiFrontEnd>().Map(app);
        app.Services.GetRequiredService<FilesFrontEnd>().Map(app);
        app.Services.GetRequiredService<Oci.OciFrontEnd>().Map(app);
        app.Services.GetRequiredService<Git.GitFrontEnd>().Map(app);
        Warm.WarmEndpoint.Map(app, options, app.Services.GetRequiredService<FetchEngine>(), app.Services.GetRequiredService<AdminAuth>(), app.Services.GetRequiredService<RequestBodyReader>(),
            app.Services.GetRequiredService<Warm.SelfClient>(), MirrorNameOf(app.Services.GetRequiredService<Git.GitMirror>()),
            app.Services.GetRequiredService<ILoggerFactory>().CreateLogger("Hoard.Warm"));
        Warm.PinEndpoint.Map(app, app.Services.GetRequiredService<FetchEngine>(), app.Services.GetRequiredService<AdminAuth>());
        if (options.ClusterRedis is not null)
        {
            app.Services.GetRequiredService<Cluster.ClusterNode>().Map(app);
        }
        app.MapFallback((HttpContext ctx) => HttpErrors.WriteAsync(ctx, 404, "no such route: see / for what Hoard serves"));
        return app;
    }

    /// <summary>Start-up: clean temp leftovers, reconcile the index with the blob files, wire the store gauge.</summary>
    private static void Prepare(WebApplication app, HoardOptions options)
    {
        app.Services.GetRequiredService<DataDirLock>(); // resolved first, so disposed last
        var logger = app.Services.GetRequiredService<ILoggerFactory>().CreateLogger("Hoard");
        var engine = app.Services.GetRequiredService<FetchEngine>();
        var started = Stopwatch.GetTimestamp();
        var temp = engine.CleanTemp();
        // Rows against files, in the background: the port opens at once; a hit meets a missing file as a miss.
        _ = Task.Run(() =>
        {
            var reconcileStarted = Stopwatch.GetTimestamp();
            try
            {
                var (droppedRows, deletedFiles) = engine.Reconcile(app.Lifetime.ApplicationStopping);
                LogReconciled(logger, engine.Stats.Blobs, droppedRows, deletedFiles, Stopwatch.GetElapsedTime(reconcileStarted).TotalMilliseconds);
            }
            catch (OperationCanceledException)
            {
                // Stopping before it was done: the next start does it again.
            }
        });
        // Git mirrors count toward --max-size with the blobs, and are evicted with them.
        var git = app.Services.GetRequiredService<Git.GitMirror>();
        var mirrors = git.Space;
        mirrors.Scan();
        if (options.ClusterRedis is not null)
        {
            // Nodes start new mirrors from each other's: each announces the mirrors it holds.
            var node = app.Services.GetRequiredService<Cluster.ClusterNode>();
            git.Peers = node;
            node.HeldMirrors = () => mirrors.Mirrors.Select(git.NameOf);
            mirrors.Evicted = mirror =>
            {
                var (upstream, repository) = git.NameOf(mirror);
                node.MirrorHeld(upstream, repository, held: false);
            };
        }
        engine.Mirrors = mirrors;
        // Mirrors made by a version that did not count them, or a lower --max-size: back under the limit now.
        engine.EvictIfNeeded();
        app.Services.GetRequiredService<HoardMetrics>().GitMirrorGauge = () => (mirrors.Bytes, mirrors.Count);
        var metrics = app.Services.GetRequiredService<HoardMetrics>();
        metrics.StoreGauge = () =>
        {
            var stats = engine.Stats;
            return (stats.Bytes, stats.Blobs, stats.Keys);
        };
        metrics.StoreMaxBytes = options.MaxSizeBytes;
        metrics.InFlightGauge = () => engine.InFlight;
        var accessLog = app.Services.GetRequiredService<AccessLog>();
        metrics.AccessLogDropped = () => accessLog.Dropped;
        var stored = engine.Stats;
        LogStarting(logger, Path.GetFullPath(options.DataDir), stored.Blobs, ValueParsers.FormatSize(stored.Bytes), ValueParsers.FormatSize(options.MaxSizeBytes), temp, Stopwatch.GetElapsedTime(started).TotalMilliseconds);
        foreach (var p in options.Pypi)
        {
            LogUpstream(logger, "pypi", p.Name, UpstreamClient.Redact(p.Url), p == options.DefaultPypiIndex ? " (default, also at /simple/)" : "");
        }
        foreach (var f in options.Files)
        {
            LogUpstream(logger, "files", f.Name, UpstreamClient.Redact(f.Url), "");
        }
        foreach (var r in options.Registries)
        {
            LogUpstream(logger, "registry", r.Name, UpstreamClient.Redact(r.Url), r.Name == options.DefaultRegistry ? " (default for /v2/NAME)" : "");
        }
        foreach (var g in options.Git)
        {
            LogUpstream(logger, "git", g.Name, UpstreamClient.Redact(g.Url), $" (at /git/{g.Name}/<repo>)");
        }
        app.Lifetime.ApplicationStarted.Register(() =>
        {
            var addresses = app.Services.GetRequiredService<Microsoft.AspNetCore.Hosting.Server.IServer>().Features.Get<IServerAddressesFeature>()?.Addresses;
            LogListening(logger, string.Join(", ", addresses ?? []));
        });
        app.Lifetime.ApplicationStopping.Register(() => LogStopping(logger, options.ShutdownTimeout.TotalSeconds));
        // Downloads are cancelled only once the server has drained (or the shutdown timeout cut it off): until then
        // clients may still be streaming them. A cancelled download is discarded, never committed partly.
        app.Lifetime.ApplicationStopped.Register(() =>
        {
            LogStopped(logger, engine.InFlight);
            engine.Dispose();
        });
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Data in {DataDir}: {Blobs} blobs, {Size} of {Max}; removed {Temp} temp files in {Ms:0} ms; checking files against the index in the background")]
    private static partial void LogStarting(ILogger logger, string dataDir, int blobs, string size, string max, int temp, double ms);

    [LoggerMessage(Level = LogLevel.Information, Message = "Index and files agree: {Blobs} blobs; dropped {Dropped} rows whose file was missing, deleted {Deleted} files no row named, in {Ms:0} ms")]
    private static partial void LogReconciled(ILogger logger, int blobs, int dropped, int deleted, double ms);

    [LoggerMessage(Level = LogLevel.Information, Message = "Upstream {Kind} {Name} = {Url}{Note}")]
    private static partial void LogUpstream(ILogger logger, string kind, string name, string url, string note);

    [LoggerMessage(Level = LogLevel.Information, Message = "Stopping: /readyz answers 503, no new connections; responses in flight have {Seconds:0.#} s to finish")]
    private static partial void LogStopping(ILogger logger, double seconds);

    [LoggerMessage(Level = LogLevel.Information, Message = "Stopped serving; {Downloads} downloads still running are discarded")]
    private static partial void LogStopped(ILogger logger, int downloads);

    [LoggerMessage(Level = LogLevel.Information, Message = "Hoard listening on {Addresses}")]
    private static partial void LogListening(ILogger logger, string addresses);
}
