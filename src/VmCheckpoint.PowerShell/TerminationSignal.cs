using System;
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
            var api = Api.Value;
            if (api is null) return null;
            try
            {
                // Action<PosixSignalContext> bound to a method taking object: delegates accept a wider reference parameter.
                var handler = Delegate.CreateDelegate(api.HandlerType, new Handler(onTerminate), Handler.InvokeMethod);
                return api.Create.Invoke(null, new[] { api.SigTerm, handler }) as IDisposable;
            }
            catch (Exception e) when (e is TargetInvocationException || e is PlatformNotSupportedException || e is ArgumentException)
            {
                return null;
            }
#endif
        }

#if !NET6_0_OR_GREATER
        /// <summary>PosixSignalRegistration.Create, its handler type and SIGTERM, looked up once; null where the runtime has none.</summary>
        private static readonly Lazy<SignalApi?> Api = new Lazy<SignalApi?>(() =>
        {
            if (System.Runtime.InteropServices.RuntimeInformation.IsOSPlatform(System.Runtime.InteropServices.OSPlatform.Windows)) return null;
            const string Assembly = ", System.Runtime.InteropServices";
            var registration = Type.GetType("System.Runtime.InteropServices.PosixSignalRegistration" + Assembly, throwOnError: false);
            var context = Type.GetType("System.Runtime.InteropServices.PosixSignalContext" + Assembly, throwOnError: false);
            var signal = Type.GetType("System.Runtime.InteropServices.PosixSignal" + Assembly, throwOnError: false);
            var create = registration?.GetMethod("Create", BindingFlags.Public | BindingFlags.Static);
            if (create is null || context is null || signal is null) return null;
            return new SignalApi(create, typeof(Action<>).MakeGenericType(context), Enum.Parse(signal, "SIGTERM"));
        });

        private sealed class SignalApi
        {
            public SignalApi(MethodInfo create, Type handlerType, object sigTerm)
            {
                Create = create;
                HandlerType = handlerType;
                SigTerm = sigTerm;
            }

            public MethodInfo Create { get; }
            public Type HandlerType { get; }
            public object SigTerm { get; }
        }

        private sealed class Handler
        {
            public static readonly MethodInfo InvokeMethod = typeof(Handler).GetMethod(nameof(Invoke))!;
            private readonly Action _action;

            public Handler(Action action) { _action = action; }

            public void Invoke(object context) => _action();
        }
#endif
    }
}
