using System;

namespace VmCheckpoint.Core.Reporting
{
    /// <summary>
    /// Output objects show their enum values as names (a string property: "Failed", never 2 in ConvertTo-Json, which
    /// writes enums as numbers), while the code keeps an internal typed twin. The catalog has always stored the
    /// names, so the stored form is the same either way.
    /// </summary>
    internal static class EnumText
    {
        public static T Parse<T>(string? text) where T : struct
        {
            if (text != null && Enum.TryParse(text, ignoreCase: true, out T value) && Enum.IsDefined(typeof(T), value))
                return value;
            throw new FormatException($"'{text}' is not a {typeof(T).Name} ({string.Join(", ", Enum.GetNames(typeof(T)))}).");
        }

        public static T? ParseOptional<T>(string? text) where T : struct =>
            string.IsNullOrEmpty(text) ? (T?)null : Parse<T>(text);
    }
}
