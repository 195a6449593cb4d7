namespace Hoard.Core.Configuration;

/// <summary>
/// Secrets read from files (--admin-token-file, --cluster-secret-file), so they appear neither in the command line
/// that `ps` shows every user nor in Hoard's environment. Errors name the flag and the file, never the content.
/// </summary>
public static class SecretFiles
{
    /// <summary>The file's content, trimmed (a trailing newline is not part of the secret). Returns an error or null.</summary>
    public static string? TryRead(string flag, string path, int minLength, out string? secret)
    {
        secret = null;
        string text;
        try
        {
            text = File.ReadAllText(path).Trim();
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return $"{flag} '{path}': cannot read it: {e.Message}";
        }
        if (text.Length < minLength)
        {
            return $"{flag} '{path}': the secret must be at least {minLength} characters (the file holds {text.Length})";
        }
        secret = text;
        return null;
    }
}
