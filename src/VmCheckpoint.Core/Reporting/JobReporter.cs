namespace VmCheckpoint.Core.Reporting
{
    /// <summary>How a long-running job tells its caller what it is doing. Called from any thread.</summary>
    public interface IJobReporter
    {
        void Progress(string activity, string status, int percent);
        void Verbose(string message);
        void Warning(string message);
    }

    public sealed class NullJobReporter : IJobReporter
    {
        public static NullJobReporter Instance { get; } = new NullJobReporter();
        public void Progress(string activity, string status, int percent) { }
        public void Verbose(string message) { }
        public void Warning(string message) { }
    }
}
