using System;
using System.Linq.Expressions;
using System.Reflection;

namespace VmCheckpoint.PowerShell
{
    /// <summary>
    /// Runs a callback when the process is told to terminate (SIGTERM: systemctl stop, docker stop, kill), before it
    /// ends; the process still ends when the callback returns. pwsh neither stops its pipeline on SIGTERM nor raises
    /// ProcessExit, so this is the only moment a running job can still undo what it started. The signal is caught with
    /// .NET 6+'s PosixSignalRegistration: directly in the net10.0 build, found by reflection in the netstandard2.0 one
    /// (PowerShell 7.4/7.5). Where there is none (Windows PowerShell 5.1, Windows) nothing is registered.
    /// </summary>
    internal static class TerminationSignal
    {
        public static IDisposable? Register(Action onTerminate)
        {
#if NET6_0_OR_GREATER
            if (OperatingSystem.IsWindows()) return null;
            return System.Runtime.InteropServices.PosixSignalRegistration.Create(System.Runtime.InteropServices.PosixSignal.SIGTERM, _ => onTerminate());
#else
            try
            {
                var registration = Type.GetType("System.Runtime.InteropServices.PosixSignalRegistration, System.Runtime.InteropServices", throwOnError: false);
                var context = Type.GetType("System.Runtime.InteropServices.PosixSignalContext, System.Runtime.InteropServices", throwOnError: false);
                var signal = Type.GetType("System.Runtime.InteropServices.PosixSignal, System.Runtime.InteropServices", throwOnError: false);
                if (registration is null || context is null || signal is null) return null;
                if (System.Runtime.InteropServices.RuntimeInformation.IsOSPlatform(System.Runtime.InteropServices.OSPlatform.Windows)) return null;
                var create = registration.GetMethod("Create", BindingFlags.Public | BindingFlags.Static);
                if (create is null) return null;
                // Action<PosixSignalContext> that ignores its argument and calls onTerminate.
                var argument = Expression.Parameter(context, "context");
                var handler = Expression.Lambda(typeof(Action<>).MakeGenericType(context),
                    Expression.Invoke(Expression.Constant(onTerminate)), argument).Compile();
                return create.Invoke(null, new object[] { Enum.Parse(signal, "SIGTERM"), handler }) as IDisposable;
            }
            catch (Exception e) when (e is TargetInvocationException || e is PlatformNotSupportedException || e is ArgumentException || e is InvalidOperationException)
            {
                return null;
            }
#endif
        }
    }
}
