using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace Hoard.Core.Storage;

/// <summary>
/// Blobs on disk, named by sha256: {data}/blobs/sha256/ab/abcdef…. Nothing a client sends becomes part of a
/// path here: only digests this process computed. Writes go to {data}/tmp and are renamed in only when verified.
/// </summary>
public sealed partial class ContentStore
{
    public ContentStore(string dataDir)
    {
        DataDir = Path.GetFullPath(dataDir);
        BlobDir = Path.Combine(DataDir, "blobs", "sha256");
        TempDir = Path.Combine(DataDir, "tmp");
        Directory.CreateDirectory(BlobDir);
        Directory.CreateDirectory(TempDir);
    }

    public string DataDir { get; }
    public string BlobDir { get; }
    public string TempDir { get; }

    public string BlobPath(string digest) => Path.Combine(BlobDir, digest[..2], digest);

    public static bool IsDigest(string s)
    {
        if (s.Length != 64)
        {
            return false;
        }
        foreach (var c in s)
        {
            if (!char.IsAsciiHexDigitLower(c) && !char.IsAsciiDigit(c))
            {
                return false;
            }
        }
        return true;
    }

    /// <summary>Removes temp files a crash left behind; nothing in tmp was ever committed.</summary>
    public int CleanTemp()
    {
        var n = 0;
        foreach (var f in Directory.EnumerateFiles(TempDir))
        {
            File.Delete(f);
            n++;
        }
        return n;
    }

    public (string Path, SafeFileHandle Handle) CreateTemp()
    {
        var path = Path.Combine(TempDir, Guid.NewGuid().ToString("N") + ".part");
        var handle = File.OpenHandle(path, FileMode.CreateNew, FileAccess.ReadWrite, FileShare.ReadWrite | FileShare.Delete);
        return (path, handle);
    }

    /// <summary>Moves a verified, flushed temp file to its blob path. The caller fsyncs the file first.</summary>
    public void Commit(string tempPath, string digest)
    {
        var dest = BlobPath(digest);
        var dir = Path.GetDirectoryName(dest)!;
        Directory.CreateDirectory(dir);
        File.Move(tempPath, dest, overwrite: true);
        FsyncDirectory(dir);
    }

    public void Delete(string digest)
    {
        try
        {
            File.Delete(BlobPath(digest));
        }
        catch (IOException)
        {
            // Already gone or busy; the start-up reconcile removes what is not indexed.
        }
    }

    /// <summary>Every blob file on disk with its size.</summary>
    public IEnumerable<(string Digest, long Size)> Scan()
    {
        foreach (var sub in Directory.EnumerateDirectories(BlobDir))
        {
            foreach (var file in new DirectoryInfo(sub).EnumerateFiles())
            {
                yield return (file.Name, file.Length);
            }
        }
    }

    /// <summary>Makes a rename durable across power loss (a process crash does not need it).</summary>
    private static void FsyncDirectory(string dir)
    {
        if (!OperatingSystem.IsLinux())
        {
            return;
        }
        var fd = Open(dir, 0x10000 /* O_DIRECTORY */);
        if (fd >= 0)
        {
            _ = Fsync(fd);
            _ = Close(fd);
        }
    }

    [LibraryImport("libc", EntryPoint = "open", StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Open(string path, int flags);

    [LibraryImport("libc", EntryPoint = "fsync")]
    private static partial int Fsync(int fd);

    [LibraryImport("libc", EntryPoint = "close")]
    private static partial int Close(int fd);
}
