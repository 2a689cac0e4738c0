using System;
using System.Net.Http;
using System.Text;
using System.Threading;
using LiteDB;

namespace VmCheckpoint.Core.Notifications
{
    /// <summary>
    /// A notice POSTed as JSON. Besides its fields it carries "text" (the one-line form), which is what Slack- and
    /// Mattermost-style incoming webhooks show, so such an address works as it is.
    /// </summary>
    internal sealed class WebhookChannel : INotificationChannel
    {
        public static readonly TimeSpan Timeout = TimeSpan.FromSeconds(10);

        private readonly Uri _uri;

        public WebhookChannel(Uri uri)
        {
            _uri = uri;
        }

        public string Name => "webhook";
        /// <summary>Without any user:password the address may hold.</summary>
        public string Target => _uri.GetComponents(UriComponents.SchemeAndServer | UriComponents.Path, UriFormat.UriEscaped);

        internal static string Json(Notice notice) => JsonSerializer.Serialize(new BsonDocument
        {
            ["text"] = notice.OneLine,
            ["kind"] = notice.Kind.ToString(),
            ["sourceKind"] = notice.SourceKind,
            ["source"] = notice.Source,
            ["subject"] = notice.Subject,
            ["what"] = notice.What,
            ["why"] = notice.Why,
            ["nextStep"] = notice.NextStep,
            ["host"] = notice.Host,
            ["time"] = notice.Time.ToUniversalTime().ToString("o"),
        });

        public void Send(Notice notice, CancellationToken cancellationToken)
        {
            using var http = new HttpClient { Timeout = Timeout };
            using var content = new StringContent(Json(notice), Encoding.UTF8, "application/json");
            HttpResponseMessage response;
            try
            {
                response = http.PostAsync(_uri, content, cancellationToken).GetAwaiter().GetResult();
            }
            catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
            {
                throw new TimeoutException($"{Target} did not answer within {Timeout.TotalSeconds:0} s.");
            }
            using var _ = response;
            if (!response.IsSuccessStatusCode)
                throw new HttpRequestException($"{Target} answered {(int)response.StatusCode} {response.ReasonPhrase}.");
        }
    }
}
