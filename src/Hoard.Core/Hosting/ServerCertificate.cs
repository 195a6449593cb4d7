using System.Net.Security;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Hoard.Core.Configuration;
using Microsoft.Extensions.Logging;

namespace Hoard.Core.Hosting;

/// <summary>
/// The certificate HTTPS listeners present, from a PEM certificate file (leaf first, then any intermediates, which
/// are sent along) and a PEM key file. cert-manager and certbot rotate certificates by replacing files (often by
/// swapping a symlink), so at most every <see cref="CheckInterval"/> a handshake looks at both files' final link
/// target, modification time and size (a stat each, no read); when they changed, the pair is loaded again. A pair
/// that does not load (half written, the key not yet matching the certificate) keeps the old certificate in
/// service, with one warning per change seen, and is tried again when the files change next.
/// </summary>
public sealed partial class ServerCertificate
{
    public static readonly TimeSpan CheckInterval = TimeSpan.FromSeconds(2);

    private readonly string _certPath;
    private readonly string _keyPath;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly Lock _reloading = new();
    private volatile Loaded _current;
    private FilesSeen _seen;
    private long _nextCheck;

    public ServerCertificate(HoardOptions options, TimeProvider time, ILogger<ServerCertificate> logger)
    {
        _certPath = options.TlsCert ?? throw new InvalidOperationException("--tls-cert is not set");
        _keyPath = options.TlsKey ?? throw new InvalidOperationException("--tls-key is not set");
        _time = time;
        _logger = logger;
        _seen = FilesSeen.Of(_certPath, _keyPath);
        // Validation loaded the pair a moment ago; if it broke since, starting without a certificate is no option.
        _current = TryLoad(_certPath, _keyPath, out var loaded) is { } error ? throw new InvalidOperationException(error) : loaded!;
        _nextCheck = _time.GetTimestamp() + TicksOf(CheckInterval);
        LogLoaded(_logger, _current.Leaf.Subject, _current.Leaf.SerialNumber, _current.Leaf.NotAfter.ToUniversalTime());
    }

    /// <summary>The certificate new connections get now.</summary>
    public X509Certificate2 Current => _current.Leaf;

    /// <summary>Kestrel's per-connection TLS options (TlsHandshakeCallbackOptions.OnConnection).</summary>
    public SslServerAuthenticationOptions ForNewConnection()
    {
        ReloadIfChanged();
        return new SslServerAuthenticationOptions { ServerCertificateContext = _current.Context };
    }

    private void ReloadIfChanged()
    {
        var now = _time.GetTimestamp();
        if (now < Volatile.Read(ref _nextCheck))
        {
            return;
        }
        lock (_reloading)
        {
            if (now < _nextCheck)
            {
                return;
            }
            _nextCheck = now + TicksOf(CheckInterval);
            var seen = FilesSeen.Of(_certPath, _keyPath);
            if (seen == _seen)
            {
                return;
            }
            _seen = seen;
            if (TryLoad(_certPath, _keyPath, out var loaded) is { } error)
            {
                LogReloadFailed(_logger, _certPath, _keyPath, error, _current.Leaf.Subject, _current.Leaf.SerialNumber);
                return;
            }
            // The old certificate is not disposed: a handshake that picked it a moment ago may still be using it.
            _current = loaded!;
            LogReloaded(_logger, loaded!.Leaf.Subject, loaded.Leaf.SerialNumber, loaded.Leaf.NotAfter.ToUniversalTime());
        }
    }

    private long TicksOf(TimeSpan span) => (long)(span.TotalSeconds * _time.TimestampFrequency);

    /// <summary>Loads a PEM pair. Returns why it cannot be used (never the key's content), or null.</summary>
    internal static string? TryLoad(string certPath, string keyPath, out Loaded? loaded)
    {
        loaded = null;
        try
        {
            var certPem = File.ReadAllText(certPath);
            var keyPem = File.ReadAllText(keyPath);
            var leaf = X509Certificate2.CreateFromPem(certPem, keyPem);
            var all = new X509Certificate2Collection();
            all.ImportFromPem(certPem);
            var intermediates = new X509Certificate2Collection();
            foreach (var c in all.Skip(1))
            {
                intermediates.Add(c);
            }
            // offline: the chain is what the file holds; nothing is fetched from the certificate's AIA URLs.
            var context = SslStreamCertificateContext.Create(leaf, intermediates, offline: true);
            loaded = new Loaded(leaf, context);
            return null;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or CryptographicException or ArgumentException)
        {
            return $"--tls-cert '{certPath}' / --tls-key '{keyPath}': cannot load the PEM certificate and key: {e.Message}";
        }
    }

    internal sealed record Loaded(X509Certificate2 Leaf, SslStreamCertificateContext Context);

    /// <summary>
    /// What a stat of the two files shows. The final link target catches a symlink swap (certbot's live/ links);
    /// modification time and size catch a file replaced by rename or rewritten in place (cert-manager's
    /// ..data swap changes both). .NET exposes no inode number without P/Invoke; these cover the same cases.
    /// </summary>
    private readonly record struct FilesSeen(string CertTarget, DateTime CertModified, long CertSize, string KeyTarget, DateTime KeyModified, long KeySize)
    {
        public static FilesSeen Of(string certPath, string keyPath)
        {
            var (ct, cm, cs) = Stat(certPath);
            var (kt, km, ks) = Stat(keyPath);
            return new FilesSeen(ct, cm, cs, kt, km, ks);
        }

        private static (string Target, DateTime Modified, long Size) Stat(string path)
        {
            try
            {
                var target = new FileInfo(path).ResolveLinkTarget(returnFinalTarget: true)?.FullName ?? Path.GetFullPath(path);
                var file = new FileInfo(target);
                return file.Exists ? (target, file.LastWriteTimeUtc, file.Length) : (target, default, -1);
            }
            catch (IOException)
            {
                return (path, default, -1);
            }
        }
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "TLS certificate {Subject} (serial {Serial}, valid until {NotAfter:u})")]
    private static partial void LogLoaded(ILogger logger, string subject, string serial, DateTime notAfter);

    [LoggerMessage(Level = LogLevel.Information, Message = "TLS certificate files changed: new connections get {Subject} (serial {Serial}, valid until {NotAfter:u})")]
    private static partial void LogReloaded(ILogger logger, string subject, string serial, DateTime notAfter);

    [LoggerMessage(Level = LogLevel.Warning, Message = "TLS certificate files {Cert} and {Key} changed but do not load ({Error}); keeping the current certificate {Subject} (serial {Serial}) until they change again")]
    private static partial void LogReloadFailed(ILogger logger, string cert, string key, string error, string subject, string serial);
}
