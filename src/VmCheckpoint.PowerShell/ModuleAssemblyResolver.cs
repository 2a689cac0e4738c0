using System;
using System.IO;
using System.Management.Automation;
using System.Reflection;

namespace VmCheckpoint.PowerShell
{
    /// <summary>
    /// Windows PowerShell 5.1 (.NET Framework) binds a strong-named reference to its exact version, and gives a
    /// module no binding redirects: ZstdSharp asks for System.Threading.Tasks.Extensions 4.2.0.1 where 4.2.1.0 ships.
    /// When a load of an assembly this module ships fails, this answers with the shipped one, if it is the same
    /// version or newer (what a binding redirect would do). .NET (PowerShell 7) already takes a newer version itself.
    /// </summary>
    public sealed class ModuleAssemblyResolver : IModuleAssemblyInitializer, IModuleAssemblyCleanup
    {
        private static readonly string Folder = Path.GetDirectoryName(typeof(ModuleAssemblyResolver).Assembly.Location)!;

        public void OnImport() => AppDomain.CurrentDomain.AssemblyResolve += OnResolve;

        public void OnRemove(PSModuleInfo psModuleInfo) => AppDomain.CurrentDomain.AssemblyResolve -= OnResolve;

        private static Assembly? OnResolve(object? sender, ResolveEventArgs args)
        {
            string? path = ShippedPathFor(args.Name);
            return path is null ? null : Assembly.LoadFrom(path);
        }

        /// <summary>The shipped file that answers a request for <paramref name="fullName"/>, or null when none does.</summary>
        public static string? ShippedPathFor(string fullName)
        {
            var wanted = new AssemblyName(fullName);
            if (string.IsNullOrEmpty(wanted.Name)) return null;
            string path = Path.Combine(Folder, wanted.Name + ".dll");
            if (!File.Exists(path)) return null;
            var shipped = AssemblyName.GetAssemblyName(path);
            return wanted.Version is null || shipped.Version >= wanted.Version ? path : null;
        }
    }
}
